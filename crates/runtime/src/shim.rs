//! The per-container shim process.
//!
//! # Background
//!
//! The engine must be able to die and restart while its containers run, and a
//! daemon with threads (tokio) must not fork into namespaces. So every
//! container gets its own small, single-threaded process: `ros shim run DIR`.
//!
//! # Design
//!
//! `run` ([`run_main`]):
//!
//! 1. writes `shim.pid`, removes a `started.json`/`exit.json` of an earlier
//!    run, reads `run.json`;
//! 2. mounts the overlay root filesystem ([`crate::overlay`]), resolves the
//!    user and devices, writes the OCI spec to `DIR/bundle/config.json`;
//! 3. creates the container with libcontainer (state under `DIR/state`),
//!    with stdin `/dev/null` and stdout/stderr on two pipes. libcontainer forks
//!    an intermediate process, which clones the container's init process with
//!    `CLONE_PARENT`: the init is the shim's own child, so the shim can
//!    `waitpid` it (no subreaper needed). The intermediate is reaped by
//!    libcontainer before `build` returns;
//! 4. brings `lo` up in a new network namespace, starts the container, writes
//!    `started.json` and answers `ok PID` on stdout (then points stdout at
//!    /dev/null);
//! 5. loops on `poll` over the two pipes and a signalfd for `SIGCHLD`, cutting
//!    output into [`LogRecord`](crate::protocol::LogRecord) lines;
//! 6. once the init exited and the pipes are drained (at most
//!    [`DRAIN_AFTER_EXIT`] more, for processes left outside a pid namespace),
//!    deletes the libcontainer container (cgroups, state), unmounts the
//!    rootfs, and writes `exit.json` last.
//!
//! On a failure before the container runs, the shim answers `error MESSAGE`,
//! cleans up, writes `exit.json` with `error` and a Docker exit code (127
//! command not found, 126 not executable or unknown user, 125 otherwise) and
//! exits with that code.
//!
//! The shim forwards no signals: the engine signals the container's pid. It
//! catches `SIGTERM`, `SIGINT`, `SIGHUP` and `SIGPIPE` with an empty handler,
//! so that a signal sent to its process group does not kill it and a gone
//! engine only makes writes fail with `EPIPE`. A handler, unlike `SIG_IGN`,
//! is reset to the default by `execve`, so the container's processes get
//! ordinary signal dispositions.
//!
//! `exec` ([`exec_main`]) joins the running container with libcontainer's
//! tenant builder, with the caller's stdin, stdout and stderr, and returns the
//! process's exit status.
//!
//! # Limitations
//!
//! - No terminal (`tty`) support: `terminal` is always false.
//! - Output written after the init exited by processes outside a private pid
//!   namespace (`host_pid`) may be lost after [`DRAIN_AFTER_EXIT`].

use crate::error::{error_chain, Error, Result};
use crate::logfile::{LineSplitter, LogWriter};
use crate::overlay;
use crate::protocol::{
    self, now_rfc3339, ExecConfig, Exited, RunConfig, Started, EXIT_FILE, LOG_FILE, SHIM_PID_FILE,
    STARTED_FILE,
};
use crate::spec::{self, Facts};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Directory (in the container directory) of the OCI bundle.
pub const BUNDLE_DIR: &str = "bundle";
/// Directory (in the container directory) of libcontainer's state.
pub const STATE_DIR: &str = "state";
/// How long output is still collected after the container's init exited,
/// when something else keeps the pipes open.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// `ros shim run DIR`: create, start and wait for the container described by
/// DIR/run.json. Returns the process exit code of the shim.
pub fn run_main(container_dir: &Path) -> i32 {
    // libcgroups warns about every controller the kernel lacks, libcontainer
    // about seccomp for every container: noise in a log per container.
    init_logging("warn,libcgroups::v1::manager=error,libcontainer::process::init::process=error");
    install_signal_handlers(&[
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ]);
    let dir = std::path::absolute(container_dir).unwrap_or_else(|_| container_dir.to_path_buf());
    let mut shim = Shim {
        dir,
        cfg: RunConfig::default(),
        mounted: false,
        container: None,
    };
    match shim.run() {
        Ok(exit) => {
            shim.write_exit(&exit);
            0
        }
        Err(e) => {
            let message = e.to_string();
            tracing::error!("{message}");
            // Clean up before answering: the engine may remove the
            // directory as soon as it reads the answer.
            shim.cleanup();
            let code = e.exit_code();
            shim.write_exit(&Exited {
                exit_code: code,
                signal: None,
                finished_at: now_rfc3339(),
                error: Some(message.clone()),
                oom_killed: false,
            });
            report_status(&protocol::StartReply::Error(message).to_string());
            code
        }
    }
}

/// `ros shim exec DIR EXEC_JSON`: run one more process in the running
/// container of DIR with this process's stdin, stdout and stderr, and exit
/// with its exit code.
pub fn exec_main(container_dir: &Path, exec: &ExecConfig) -> i32 {
    init_logging("off");
    install_signal_handlers(&[Signal::SIGPIPE]);
    match exec_in(container_dir, exec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ros shim exec: {e}");
            e.exit_code()
        }
    }
}

/// Logs go to stderr as it was when the shim started (the engine points it
/// at DIR/shim.log); the level comes from `ROS_SHIM_LOG` (an `EnvFilter`
/// directive).
///
/// The log writes to a duplicate of fd 2, not to fd 2 itself: libcontainer
/// logs from its forked processes too, after it replaced their fd 2 with the
/// container's stderr, and those messages belong in the shim's log, not in
/// the container's.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROS_SHIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // try_clone_to_owned duplicates with F_DUPFD_CLOEXEC.
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return;
    };
    let file: &'static std::fs::File = Box::leak(Box::new(std::fs::File::from(fd)));
    let _ = tracing_subscriber::fmt()
        .with_writer(move || file)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

extern "C" fn ignore_signal(_: libc::c_int) {}

fn install_signal_handlers(signals: &[Signal]) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler};
    let action = SigAction::new(
        SigHandler::Handler(ignore_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for &sig in signals {
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        if let Err(e) = unsafe { sigaction(sig, &action) } {
            tracing::warn!("failed to install a handler for {sig}: {e}");
        }
    }
}

/// Writes the one status line to stdout (the engine's pipe), then points
/// stdout at /dev/null: the engine may be gone, and nothing else may go there.
fn report_status(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|_| out.flush())
    {
        tracing::warn!("failed to report status to the engine: {e}");
    }
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), libc::STDOUT_FILENO);
    }
}

struct Shim {
    dir: PathBuf,
    cfg: RunConfig,
    mounted: bool,
    container: Option<Container>,
}

/// A started container and the read ends of its output pipes.
struct Running {
    pid: Pid,
    stdout: OwnedFd,
    stderr: OwnedFd,
    log: LogWriter,
}

impl Shim {
    fn run(&mut self) -> Result<Exited> {
        for stale in [STARTED_FILE, EXIT_FILE] {
            let _ = std::fs::remove_file(self.dir.join(stale));
        }
        let pid_path = self.dir.join(SHIM_PID_FILE);
        atomic_file::write(&pid_path, std::process::id().to_string().as_bytes()).map_err(
            |source| Error::Write {
                path: pid_path,
                source,
            },
        )?;
        self.cfg = protocol::read_run_config(&self.dir)?;
        let running = self.start()?;

        // started.json first: the engine may read it as soon as it has the
        // answer.
        let started = Started {
            pid: running.pid.as_raw(),
            started_at: now_rfc3339(),
        };
        let path = self.dir.join(STARTED_FILE);
        if let Err(e) = protocol::write_json_atomic(&path, &started) {
            tracing::error!("failed to write {}: {e}", path.display());
        }
        report_status(&protocol::StartReply::Ok(running.pid.as_raw()).to_string());

        let cgroup_path = self.cgroup_path();
        let status = supervise(running, &cgroup_path);
        let finished_at = now_rfc3339();
        let oom_killed = oom_killed(&cgroup_path);
        self.cleanup();
        let (exit_code, signal) = match status {
            WaitStatus::Exited(_, code) => (code, None),
            WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
            other => {
                tracing::warn!("unexpected wait status {other:?}");
                (255, None)
            }
        };
        Ok(Exited {
            exit_code,
            signal,
            finished_at,
            error: None,
            oom_killed,
        })
    }

    fn cgroup_path(&self) -> String {
        container_cgroup_path(&self.cfg)
    }

    fn start(&mut self) -> Result<Running> {
        let cfg = &self.cfg;
        validate_id(&cfg.id)?;
        // A shim killed before its cleanup leaves the rootfs mounted.
        if overlay::is_mounted(&cfg.rootfs.target) {
            tracing::warn!("unmounting stale rootfs {}", cfg.rootfs.target.display());
            overlay::unmount_rootfs(&cfg.rootfs.target)?;
        }
        // A cgroup left by an earlier run (children a container made itself
        // keep it from being removed) would refuse the new process.
        crate::cgroup::remove_tree(&self.cgroup_path());
        overlay::mount_rootfs(&cfg.rootfs, &self.dir)?;
        self.mounted = true;

        let facts = Facts::gather(cfg, &cfg.rootfs.target)?;
        // Docker creates a missing working directory; libcontainer does not.
        if !cfg.cwd.is_empty() {
            crate::inroot::mkdir_all_in_root(&cfg.rootfs.target, &cfg.cwd)?;
        }
        let mut spec = spec::generate(cfg, &facts)?;
        if cfg.cgroup_path.is_empty() {
            if let Some(linux) = spec.linux_mut() {
                linux.set_cgroups_path(Some(PathBuf::from(self.cgroup_path())));
            }
        }
        let bundle = self.dir.join(BUNDLE_DIR);
        std::fs::create_dir_all(&bundle)
            .map_err(|e| Error::io(format!("failed to create {}", bundle.display()), e))?;
        spec.save(bundle.join("config.json"))?;

        let state_root = self.dir.join(STATE_DIR);
        std::fs::create_dir_all(&state_root)
            .map_err(|e| Error::io(format!("failed to create {}", state_root.display()), e))?;
        remove_stale_state(&state_root.join(&cfg.id));

        let log_path = if cfg.log_path.as_os_str().is_empty() {
            self.dir.join(LOG_FILE)
        } else {
            cfg.log_path.clone()
        };
        let log = LogWriter::open(&log_path, cfg.log_max_bytes)
            .map_err(|e| Error::io(format!("failed to open {}", log_path.display()), e))?;

        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::sys("failed to create a pipe", e))
        };
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        let stdin = std::fs::File::open("/dev/null")
            .map_err(|e| Error::io("failed to open /dev/null", e))?;

        // libcontainer applies oom_score_adj by writing the shim's own, for
        // its children to inherit; the shim then takes its own back so that
        // it is not the OOM killer's choice along with the container.
        let own_oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj").ok();
        let built = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
            .with_root_path(&state_root)
            .map_err(|e| Error::container("failed to create container", &e))?
            .with_stdin(stdin)
            .with_stdout(stdout_w)
            .with_stderr(stderr_w)
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .build();
        if let (Some(_), Some(own)) = (cfg.oom_score_adj, &own_oom_score_adj) {
            if let Err(e) = std::fs::write("/proc/self/oom_score_adj", own.trim()) {
                tracing::warn!("failed to restore the shim's oom_score_adj: {e}");
            }
        }
        let container = built.map_err(|e| Error::container("failed to create container", &e))?;
        // The builder dropped its copies of the write ends: the pipes reach
        // end-of-file once the container's processes are gone.
        let pid = container.pid().ok_or_else(|| Error::Container {
            context: "failed to create container",
            message: "libcontainer reported no init pid".to_string(),
        })?;
        self.container = Some(container);

        if !cfg.host_network {
            loopback_up(pid)?;
        }
        if let Some(c) = self.container.as_mut() {
            c.start()
                .map_err(|e| Error::container("failed to start container", &e))?;
        }
        Ok(Running {
            pid,
            stdout: stdout_r,
            stderr: stderr_r,
            log,
        })
    }

    /// Deletes the libcontainer container and unmounts the rootfs; errors are
    /// logged (there is nobody to return them to).
    fn cleanup(&mut self) {
        if let Some(mut c) = self.container.take() {
            if let Err(e) = c.delete(true) {
                tracing::warn!(
                    "failed to delete container {}: {}",
                    self.cfg.id,
                    error_chain(&e)
                );
            }
        }
        crate::cgroup::remove_tree(&self.cgroup_path());
        if self.mounted {
            if let Err(e) = overlay::unmount_rootfs(&self.cfg.rootfs.target) {
                tracing::warn!("{e}");
            }
            self.mounted = false;
        }
    }

    fn write_exit(&self, exit: &Exited) {
        let path = self.dir.join(EXIT_FILE);
        if let Err(e) = protocol::write_json_atomic(&path, exit) {
            tracing::error!("failed to write {}: {e}", path.display());
        }
    }
}

/// The id names directories: libcontainer's rules keep it one plain name.
fn validate_id(id: &str) -> Result<()> {
    ContainerBuilder::new(id.to_string(), SyscallType::default())
        .validate_id()
        .map(|_| ())
        .map_err(|e| {
            Error::InvalidConfig(format!("invalid container id {id:?}: {}", error_chain(&e)))
        })
}

/// A container state directory left by an earlier shim of the same container
/// (killed before it could clean up) would make libcontainer refuse to
/// create the container.
fn remove_stale_state(state: &Path) {
    if !state.exists() {
        return;
    }
    tracing::warn!("removing stale container state {}", state.display());
    match Container::load(state.to_path_buf()) {
        Ok(mut c) => {
            if let Err(e) = c.delete(true) {
                tracing::warn!("failed to delete stale container: {}", error_chain(&e));
            }
        }
        Err(e) => tracing::warn!("failed to load stale container: {}", error_chain(&e)),
    }
    let _ = std::fs::remove_dir_all(state);
}

/// Sets `lo` up in the network namespace of `pid`, as Docker's network
/// setup does for a container's new namespace.
///
/// Hand-written with one ioctl: the netlink crates are asynchronous or large,
/// and flags of one interface are all that is needed. A socket belongs to the
/// network namespace it was created in, so the shim enters the container's
/// namespace only to create the socket.
fn loopback_up(pid: Pid) -> Result<()> {
    use nix::sched::{setns, CloneFlags};
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let ns_path = format!("/proc/{pid}/ns/net");
    let target = std::fs::File::open(&ns_path)
        .map_err(|e| Error::io(format!("failed to open {ns_path}"), e))?;
    let own = std::fs::File::open("/proc/self/ns/net")
        .map_err(|e| Error::io("failed to open /proc/self/ns/net", e))?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::sys("failed to enter the container's network namespace", e))?;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    );
    setns(own.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::sys("failed to return to the shim's network namespace", e))?;
    let sock = sock.map_err(|e| Error::sys("failed to create a socket in the container", e))?;

    // SAFETY: ifreq is plain data; the ioctls read and write only it.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Error::io(
                "failed to read the flags of lo",
                std::io::Error::last_os_error(),
            ));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Error::io(
                "failed to set lo up",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Reaps children without blocking; returns the status of `pid` if it exited.
fn reap(pid: Pid, status: &mut Option<WaitStatus>) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(s @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _))) => {
                if p == pid {
                    *status = Some(s);
                }
            }
            Ok(_) => {}
        }
    }
}

/// Copies the container's output to the log until its init exited and the
/// pipes are drained; returns the init's wait status.
fn supervise(running: Running, cgroup_path: &str) -> WaitStatus {
    let Running {
        pid,
        stdout,
        stderr,
        mut log,
    } = running;
    // SIGCHLD is blocked only now: the container's processes were cloned
    // before and keep an empty signal mask.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let sigfd = mask
        .thread_block()
        .and_then(|_| SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK))
        .map_err(|e| tracing::error!("failed to watch SIGCHLD, polling instead: {e}"))
        .ok();

    let mut streams: Vec<(OwnedFd, LineSplitter)> = vec![
        (stdout, LineSplitter::new("stdout")),
        (stderr, LineSplitter::new("stderr")),
    ];
    let mut status = None;
    let mut exited_at: Option<Instant> = None;
    // The start's allocations (run.json, the OCI spec, libcontainer's
    // builder) are over: what they freed goes back to the kernel before the
    // shim waits, for as long as its container runs.
    heap_trim::release_free_heap();
    let mut buf = vec![0u8; 64 * 1024];
    reap(pid, &mut status);
    loop {
        if status.is_some() && exited_at.is_none() {
            exited_at = Some(Instant::now());
            // The container ends with its first process, as in Docker.
            // Without a pid namespace of its own, the others would live on
            // (and keep the output pipes open).
            kill_leftovers(cgroup_path);
        }
        if let Some(t) = exited_at {
            if streams.is_empty() || t.elapsed() >= DRAIN_AFTER_EXIT {
                break;
            }
        }
        let timeout = if exited_at.is_some() || sigfd.is_none() {
            PollTimeout::from(100u16)
        } else {
            PollTimeout::NONE
        };
        let mut fds: Vec<PollFd> = streams
            .iter()
            .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Some(s) = &sigfd {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => {
                tracing::error!("poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut closed = Vec::new();
        for (i, (fd, splitter)) in streams.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) => {
                    splitter.finish(&mut log);
                    closed.push(i);
                }
                Ok(n) => splitter.feed(&buf[..n], &mut log),
                Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
                Err(e) => {
                    tracing::warn!("failed to read container output: {e}");
                    splitter.finish(&mut log);
                    closed.push(i);
                }
            }
        }
        for i in closed.into_iter().rev() {
            streams.remove(i);
        }
        if let Some(s) = &sigfd {
            while let Ok(Some(_)) = s.read_signal() {}
        }
        reap(pid, &mut status);
        if status.is_none() && sigfd.is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for (_, splitter) in streams.iter_mut() {
        splitter.finish(&mut log);
    }
    status.unwrap_or(WaitStatus::Exited(pid, 255))
}

/// SIGKILLs every process left in the container's cgroup (there are none
/// when the container has its own pid namespace: the kernel killed them
/// with its init).
fn kill_leftovers(cgroup_path: &str) {
    let rel = cgroup_path.trim_start_matches('/');
    let candidates = [
        Path::new("/sys/fs/cgroup").join(rel).join("cgroup.procs"),
        Path::new("/sys/fs/cgroup/pids")
            .join(rel)
            .join("cgroup.procs"),
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("cgroup.procs"),
    ];
    let Some(procs) = candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
    else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        tracing::debug!("killing process {pid} left in the container");
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Whether the kernel OOM-killed a process of the container's cgroup.
fn oom_killed(cgroup_path: &str) -> bool {
    let rel = cgroup_path.trim_start_matches('/');
    let candidates = [
        Path::new("/sys/fs/cgroup").join(rel).join("memory.events"),
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.oom_control"),
    ];
    candidates.iter().any(|p| {
        std::fs::read_to_string(p)
            .map(|text| {
                text.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
            .unwrap_or(false)
    })
}

/// The container's cgroup: the one its run config names, or
/// `/system-docker/ID`.
fn container_cgroup_path(cfg: &RunConfig) -> String {
    if cfg.cgroup_path.is_empty() {
        format!("/system-docker/{}", cfg.id)
    } else {
        cfg.cgroup_path.clone()
    }
}

/// The cgroup v2 path of a process (`/proc/PID/cgroup`, line `0::PATH`)
/// relative to the container's cgroup `base`, when the process is in a
/// cgroup below it; `None` when it is in `base` itself, elsewhere, or the
/// file has no cgroup v2 line (cgroup v1: there processes may join any
/// cgroup).
fn sub_cgroup(base: &str, proc_cgroup: &str) -> Option<String> {
    let path = proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?
        .trim();
    let base = Path::new("/").join(base.trim_start_matches('/'));
    let relative = Path::new(path).strip_prefix(&base).ok()?;
    let relative = relative.to_str()?;
    (!relative.is_empty()).then(|| relative.to_string())
}

fn exec_in(dir: &Path, exec: &ExecConfig) -> Result<i32> {
    if exec.args.is_empty() {
        return Err(Error::InvalidConfig("no command given".to_string()));
    }
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let cfg = protocol::read_run_config(&dir)?;
    validate_id(&cfg.id)?;
    let state_root = dir.join(STATE_DIR);
    let container = Container::load(state_root.join(&cfg.id))
        .map_err(|e| Error::container("failed to load container", &e))?;
    let init = container.pid().ok_or_else(|| Error::Container {
        context: "failed to load container",
        message: "container is not running".to_string(),
    })?;

    // Users are looked up in the container's own view of its files.
    let root = PathBuf::from(format!("/proc/{init}/root"));
    let user_spec = if exec.user.is_empty() {
        &cfg.user
    } else {
        &exec.user
    };
    let user = crate::user::resolve_in_root(&root, user_spec)?;

    let mut env: HashMap<String, String> = HashMap::new();
    for kv in &exec.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        env.insert(k.to_string(), v.to_string());
    }
    if !exec.user.is_empty() && !env.contains_key("HOME") {
        env.insert("HOME".to_string(), user.home.clone());
    }
    let cwd = [exec.cwd.as_str(), cfg.cwd.as_str()]
        .into_iter()
        .find(|c| !c.is_empty())
        .unwrap_or("/")
        .to_string();
    let caps: Vec<String> = if exec.privileged {
        // Every capability the runtime holds (it cannot give more).
        let own = spec::own_capabilities();
        spec::ALL_CAPABILITIES
            .iter()
            .filter(|c| own.as_ref().is_none_or(|own| own.contains(c)))
            .map(|c| format!("CAP_{c}"))
            .collect()
    } else {
        Vec::new()
    };

    // The new process joins the cgroup of the container's init process,
    // as runc's exec does. That is the container's own cgroup, unless the
    // container moved its processes into a child cgroup to enable
    // controllers for its own children (Docker in Docker, the docker system
    // service): cgroup v2 then refuses processes in the container's cgroup
    // (EBUSY), and only a leaf below it takes them.
    let sub_cgroup = std::fs::read_to_string(format!("/proc/{init}/cgroup"))
        .ok()
        .and_then(|text| sub_cgroup(&container_cgroup_path(&cfg), &text));
    let pid = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
        .with_root_path(&state_root)
        .map_err(|e| Error::container("failed to exec in container", &e))?
        .as_tenant()
        .with_sub_cgroup(sub_cgroup)
        .with_container_args(exec.args.clone())
        .with_env(env)
        .with_cwd(Some(cwd))
        .with_user(Some(user.uid))
        .with_group(Some(user.gid))
        .with_additional_gids(user.additional_gids)
        .with_capabilities(caps)
        .with_detach(false)
        .build()
        .map_err(|e| Error::container("failed to exec in container", &e))?;
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("failed to wait for process {pid}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sub_cgroup;

    #[test]
    fn exec_joins_the_leaf_the_init_process_moved_to() {
        let base = "/system-docker/abc";
        assert_eq!(
            sub_cgroup(base, "0::/system-docker/abc/init\n").as_deref(),
            Some("init")
        );
        // Relative cgroup paths are under the cgroup root as well.
        assert_eq!(
            sub_cgroup("system-docker/abc", "0::/system-docker/abc/a/b\n").as_deref(),
            Some("a/b")
        );
    }

    #[test]
    fn exec_joins_the_container_cgroup_when_the_init_process_is_in_it() {
        let base = "/system-docker/abc";
        assert_eq!(sub_cgroup(base, "0::/system-docker/abc\n"), None);
        // A cgroup whose name only starts like the container's is not below it.
        assert_eq!(sub_cgroup(base, "0::/system-docker/abcdef\n"), None);
        assert_eq!(sub_cgroup(base, "0::/elsewhere\n"), None);
        // cgroup v1: no unified line, libcontainer joins as before.
        assert_eq!(sub_cgroup(base, "12:memory:/system-docker/abc\n"), None);
    }
}

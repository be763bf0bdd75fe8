//! Fixtures for the host integration tests that drive a real system engine:
//! a daemon in a temporary directory, the docker CLIs found on this machine,
//! commands with deadlines, polling, and raw HTTP over the engine's socket.
//!
//! Every fixture cleans up on drop, also when a test fails: the daemon is
//! killed, then every process that belongs to the temporary directory (the
//! containers' shims, whose command line names it, and the containers'
//! processes, whose root is below it), then everything mounted below the
//! directory is unmounted and the directory removed.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one CLI command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a polled condition may take to become true.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the tests can run: they run real containers, so they need root.
/// Prints a loud message when they cannot.
pub fn require_root() -> bool {
    let euid = effective_uid();
    if euid != Some(0) {
        eprintln!(
            "\n!!! SKIPPED: the system engine tests run real containers and need root \
             (effective uid: {euid:?}); run `cargo xtask test` as root !!!\n"
        );
        return false;
    }
    true
}

/// The effective uid, from /proc/self/status ("Uid: real effective saved fs").
fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `ros` binary under test.
pub fn ros_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ros"))
}

/// A docker command-line client to test the engine with.
#[derive(Clone, Debug)]
pub struct Cli {
    pub path: PathBuf,
    /// e.g. "docker 20.10.24+dfsg1", for messages.
    pub label: String,
}

/// Debian's docker.io CLI (20.10).
pub const DEBIAN_DOCKER: &str = "/usr/bin/docker";

/// The docker CLIs to test with: Debian's (required) and the newest one on
/// PATH when it is another binary (skipped with a loud message if absent).
pub fn clis() -> Vec<Cli> {
    let mut clis = Vec::new();
    let debian = Path::new(DEBIAN_DOCKER);
    assert!(
        debian.is_file(),
        "{DEBIAN_DOCKER} is missing: install Debian's docker.io package (cargo xtask test does)"
    );
    clis.push(cli(debian));
    let newer = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("docker"))
            .find(|p| p.is_file() && !same_file(p, debian))
    });
    match newer {
        Some(p) => clis.push(cli(&p)),
        None => eprintln!(
            "\n!!! WARNING: no docker CLI other than {DEBIAN_DOCKER} on PATH: the tests \
             with the newer CLI are SKIPPED !!!\n"
        ),
    }
    let labels: Vec<String> = clis
        .iter()
        .map(|c| format!("{} ({})", c.label, c.path.display()))
        .collect();
    eprintln!("testing with {}", labels.join(" and "));
    clis
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn cli(path: &Path) -> Cli {
    let out = Command::new(path)
        .arg("--version")
        .env(
            "DOCKER_CONFIG",
            std::env::temp_dir().join("oxos-test-no-docker-config"),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", path.display()));
    let version = String::from_utf8_lossy(&out.stdout);
    // "Docker version 20.10.24+dfsg1, build 297e128"
    let label = version
        .split_whitespace()
        .nth(2)
        .map(|v| format!("docker {}", v.trim_end_matches(',')))
        .unwrap_or_else(|| path.display().to_string());
    Cli {
        path: path.to_path_buf(),
        label,
    }
}

/// A system engine daemon with its own data-root, socket and docker client
/// configuration, all in one temporary directory.
pub struct Daemon {
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    /// How many times the daemon was started (names the log files).
    starts: u32,
}

impl Daemon {
    /// Starts a daemon and waits until it answers `/_ping`.
    pub fn start() -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("oxos-engine-")
            .tempdir()
            .expect("cannot create a temporary directory");
        std::fs::create_dir(dir.path().join("docker-config")).expect("cannot create DOCKER_CONFIG");
        let mut daemon = Daemon {
            dir: Some(dir),
            child: None,
            starts: 0,
        };
        daemon.spawn();
        daemon
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("daemon directory").path()
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir().join("data")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("engine.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir().join(format!("daemon.{start}.log"))
    }

    /// All the daemon's logs so far, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let log = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
                format!("--- daemon log, start {n} ---\n{log}")
            })
            .collect()
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("daemon log");
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(ros_bin())
            .arg("system-dockerd")
            .arg("--data-root")
            .arg(self.data_root())
            .arg("-H")
            .arg(self.host())
            .env("RUST_LOG", "debug")
            // The tests never reach beyond 127.0.0.1: should the engine try
            // to pull from a public registry (an image it failed to find),
            // the request goes to a closed local port and fails at once.
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("daemon log"))
            .stderr(log)
            .spawn()
            .expect("cannot start ros system-dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + POLL_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the daemon exited at start ({status})\n{}", self.logs());
            }
            if let Ok((200, _)) = self.http("GET", "/_ping", None) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not answer /_ping within {POLL_TIMEOUT:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the daemon with SIGKILL (its containers keep running) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same data-root.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// A docker command against this daemon, with an empty client configuration.
    pub fn cmd(&self, cli: &Cli, args: &[&str]) -> Command {
        let mut c = Command::new(&cli.path);
        c.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_API_VERSION");
        c
    }

    /// Runs a docker command (with a deadline) and returns what it did.
    pub fn docker(&self, cli: &Cli, args: &[&str]) -> Run {
        let out = try_run_with_timeout(self.cmd(cli, args), COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("{} {}: {e}\n{}", cli.label, args.join(" "), self.logs()));
        Run {
            what: format!("{} {}", cli.label, args.join(" ")),
            out,
        }
    }

    /// Runs a docker command that must succeed; returns its trimmed stdout.
    pub fn ok(&self, cli: &Cli, args: &[&str]) -> String {
        let run = self.docker(cli, args);
        if !run.out.status.success() {
            panic!("{}\n{}", run.describe("failed"), self.logs());
        }
        run.stdout().trim().to_string()
    }

    /// Runs a docker command that must fail; returns it for checks of its
    /// error message.
    pub fn fails(&self, cli: &Cli, args: &[&str]) -> Run {
        let run = self.docker(cli, args);
        if run.out.status.success() {
            panic!(
                "{}\n{}",
                run.describe("succeeded but should have failed"),
                self.logs()
            );
        }
        run
    }

    /// Runs OxOS's own client, `ros system-docker -H unix://SOCKET ARGS...`.
    pub fn system_docker(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(ros_bin());
        cmd.arg("system-docker")
            .arg("-H")
            .arg(self.host())
            .args(args);
        let out = try_run_with_timeout(cmd, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("system-docker {}: {e}\n{}", args.join(" "), self.logs()));
        Run {
            what: format!("system-docker {}", args.join(" ")),
            out,
        }
    }

    /// `docker inspect -f FORMAT NAME`.
    pub fn inspect(&self, cli: &Cli, name: &str, format: &str) -> String {
        self.ok(cli, &["inspect", "-f", format, name])
    }

    /// One raw HTTP/1.1 request over the socket: (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        json_body: Option<&[u8]>,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        http_unix(&self.socket(), method, path, json_body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        let Some(dir) = self.dir.take() else { return };
        let ids: Vec<String> = std::fs::read_dir(dir.path().join("data/containers"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        kill_processes_under(dir.path());
        unmount_under(dir.path());
        remove_cgroups(&ids);
        if let Err(e) = dir.close() {
            eprintln!("warning: cannot remove the test directory: {e}");
        }
    }
}

/// The outcome of one command.
pub struct Run {
    pub what: String,
    pub out: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    pub fn describe(&self, verdict: &str) -> String {
        format!(
            "`{}` {verdict} ({})\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }
}

/// Runs `cmd` with piped output; kills it and panics after `timeout`.
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> Output {
    try_run_with_timeout(cmd, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `cmd` with piped output; kills it (SIGKILL: the docker CLI forwards
/// SIGTERM to the container and keeps waiting) after `timeout`.
pub fn try_run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    // Read both pipes on their own threads so that a chatty command never
    // blocks on a full pipe while we wait for it.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a command") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
            let err = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
            return Err(format!(
                "{what} did not finish within {timeout:?} (killed)\nstdout:\n{out}\nstderr:\n{err}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    })
}

/// Polls `check` until it returns Some, failing with `what` (and the last
/// value seen, from `describe`) after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (comm) STATE ...": comm may hold spaces, so look after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Sends SIGKILL to a process from the host.
pub fn kill9(pid: i32) {
    signal(pid, "KILL");
}

/// Sends a signal (by name, e.g. "USR1") to a process from the host.
pub fn signal(pid: i32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// One HTTP/1.1 request over a unix socket, with `Connection: close`.
pub fn http_unix(
    socket: &Path,
    method: &str,
    path: &str,
    json_body: Option<&[u8]>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    let body = json_body.unwrap_or_default();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if json_body.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    parse_http_response(&response).ok_or_else(|| {
        std::io::Error::other(format!(
            "malformed HTTP response: {:?}",
            String::from_utf8_lossy(&response)
        ))
    })
}

/// (status, body) of a complete HTTP/1.1 response; decodes a chunked body.
fn parse_http_response(response: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..end]).ok()?;
    let body = &response[end + 4..];
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut decoded = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some((status, decoded));
        }
        decoded.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released: another process may
/// take it in between, which is unlikely in a test run).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}

/// Kills (SIGKILL) the processes of `dir`: those whose command line names a
/// path below it and those whose root directory is below it; waits for them.
pub fn kill_processes_under(dir: &Path) {
    let me = std::process::id().to_string();
    let needle = dir.to_string_lossy().into_owned();
    let pids: Vec<String> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name.bytes().all(|b| b.is_ascii_digit()) && *name != me)
                .filter(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap_or_default();
                    String::from_utf8_lossy(&cmdline).contains(&needle) || root.starts_with(dir)
                })
                .collect()
        })
        .unwrap_or_default();
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && pids
            .iter()
            .any(|p| p.parse().map(pid_alive).unwrap_or(false))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lazily unmounts everything mounted at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.reverse();
    for point in points {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(&point)
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes the (empty) cgroups that containers with these ids left behind,
/// under the engine's default cgroup parent, in every hierarchy.
fn remove_cgroups(ids: &[String]) {
    let roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    for root in roots
        .iter()
        .map(PathBuf::as_path)
        .chain([Path::new("/sys/fs/cgroup")])
    {
        for id in ids {
            let _ = std::fs::remove_dir(root.join("system-docker").join(id));
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN` (octal).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(octal, 8) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Debian's `docker-registry` on 127.0.0.1 with a free port and storage in a
/// temporary directory; killed on drop.
pub struct Registry {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("oxos-registry-")
            .tempdir()
            .expect("registry directory");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .expect("cannot start docker-registry (apt-get install docker-registry)");
        let mut registry = Registry { port, child, dir };
        wait_for("the registry to listen", POLL_TIMEOUT, || {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!(
                    "docker-registry exited at start ({status}):\n{}",
                    registry.log()
                );
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        registry
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes a docker-archive file into the registry as `name:tag` with skopeo;
    /// returns the reference `127.0.0.1:PORT/name:tag`.
    pub fn push_archive(&self, archive: &Path, name_tag: &str) -> String {
        let reference = format!("127.0.0.1:{}/{name_tag}", self.port);
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("docker://{reference}"));
        let out = run_with_timeout(cmd, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "skopeo copy into the registry failed: {}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_responses_are_decoded() {
        let raw = b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"m\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(raw), Some((400, b"{\"m\":1}".to_vec())));
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK";
        assert_eq!(parse_http_response(plain), Some((200, b"OK".to_vec())));
    }
}

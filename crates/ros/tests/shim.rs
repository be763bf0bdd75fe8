//! Real containers through `ros shim run DIR` and `ros shim exec DIR JSON`,
//! exactly as the engine drives them: write run.json, start the shim, read
//! its status line, wait for it, read exit.json and the log.
//!
//! The image is one layer made from the host's static busybox. These tests
//! need root (namespaces, overlayfs, cgroups); they are skipped otherwise.

use runtime::protocol::{
    BindMount, ExecConfig, Exited, LogRecord, Resources, Rootfs, RunConfig, Started,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const ROS: &str = env!("CARGO_BIN_EXE_ros");
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "id", "hostname", "ls", "true", "false", "touch", "head", "grep",
    "pwd",
];

fn can_run() -> bool {
    let root = nix_uid_is_root();
    if !root {
        eprintln!("skipped: needs root");
    } else if !Path::new(BUSYBOX).exists() {
        eprintln!("skipped: needs {BUSYBOX}");
        return false;
    }
    root
}

fn nix_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A 64-hex container id, unique per test run.
fn new_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:016x}{:08x}{:08x}{:032x}",
        t as u64,
        std::process::id(),
        n,
        0
    )
}

/// A busybox image layer with /etc/passwd (root and user:1000).
fn make_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    std::fs::create_dir_all(layer.join("etc")).unwrap();
    std::fs::copy(BUSYBOX, layer.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        layer.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        layer.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nwheel:x:10:user\n",
    )
    .unwrap();
    layer
}

/// One container: its directory, its config and the shim process.
struct Ctr {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    layer: PathBuf,
    cfg: RunConfig,
    shim: Option<Child>,
}

impl Ctr {
    fn new(args: &[&str]) -> Ctr {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let layer = make_layer(&base);
        let dir = base.join("container");
        std::fs::create_dir_all(&dir).unwrap();
        let id = new_id();
        let cfg = RunConfig {
            id: id.clone(),
            rootfs: Rootfs {
                lower: vec![layer.clone()],
                upper: base.join("upper"),
                work: base.join("work"),
                target: dir.join("rootfs"),
            },
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".to_string()],
            cgroup_path: format!("/ros-shim-test/{id}"),
            log_path: dir.join("container.log"),
            ..Default::default()
        };
        Ctr {
            _tmp: tmp,
            dir,
            layer,
            cfg,
            shim: None,
        }
    }

    /// Writes run.json, starts the shim and returns its status line.
    fn start(&mut self) -> String {
        std::fs::write(
            self.dir.join("run.json"),
            serde_json::to_vec_pretty(&self.cfg).unwrap(),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join("shim.log")).unwrap();
        let mut child = Command::new(ROS)
            .args(["shim", "run"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.shim = Some(child);
        line.trim_end().to_string()
    }

    /// Starts the container and returns the pid of its process.
    fn start_ok(&mut self) -> i32 {
        let line = self.start();
        let pid = line
            .strip_prefix("ok ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("status {line:?}, shim log:\n{}", self.shim_log()));
        pid
    }

    /// Waits for the shim to exit (at most 30 s) and returns exit.json.
    fn wait(&mut self) -> Exited {
        let mut child = self.shim.take().expect("shim started");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                // Stop the container, not the shim, so that it cleans up.
                if let Some(started) = read_started(&self.dir) {
                    let _ = Command::new("kill")
                        .args(["-KILL", &started.pid.to_string()])
                        .status();
                }
                let _ = child.wait();
                panic!("container did not exit in time; log:\n{}", self.shim_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(self.dir.join("exit.json"))
            .unwrap_or_else(|e| panic!("no exit.json ({e}); shim log:\n{}", self.shim_log()));
        serde_json::from_str(&text).unwrap()
    }

    fn run(&mut self) -> Exited {
        self.start_ok();
        self.wait()
    }

    fn shim_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("shim.log")).unwrap_or_default()
    }

    fn records(&self) -> Vec<LogRecord> {
        std::fs::read_to_string(&self.cfg.log_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn stdout(&self) -> String {
        self.records()
            .into_iter()
            .filter(|r| r.stream == "stdout")
            .map(|r| r.log)
            .collect()
    }

    fn exec(&self, args: &[&str]) -> (i32, String, String) {
        self.exec_as(ExecConfig {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    fn exec_as(&self, exec: ExecConfig) -> (i32, String, String) {
        let path = self.dir.join("exec.json");
        std::fs::write(&path, serde_json::to_vec(&exec).unwrap()).unwrap();
        let out = Command::new(ROS)
            .args(["shim", "exec"])
            .arg(&self.dir)
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn kill(&self, pid: i32) {
        let ok = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {pid}");
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        if let Some(mut child) = self.shim.take() {
            if let Some(started) = read_started(&self.dir) {
                let _ = Command::new("kill")
                    .args(["-KILL", &started.pid.to_string()])
                    .status();
            }
            let _ = child.wait();
        }
        // The parent cgroups made for the tests; busy while other tests run.
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let _ = std::fs::remove_dir(c.path().join("ros-shim-test"));
            }
        }
        let _ = std::fs::remove_dir("/sys/fs/cgroup/ros-shim-test");
    }
}

fn read_started(dir: &Path) -> Option<Started> {
    serde_json::from_slice(&std::fs::read(dir.join("started.json")).ok()?).ok()
}

fn is_mounted(path: &Path) -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy();
    mi.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

#[test]
fn output_lands_in_the_log_as_stdout_and_stderr() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sh", "-c", "echo hello; echo err >&2"]);
    let exit = c.run();
    assert_eq!(exit.exit_code, 0, "{exit:?}\n{}", c.shim_log());
    assert_eq!(exit.error, None);
    let recs: Vec<(String, String)> = c.records().into_iter().map(|r| (r.stream, r.log)).collect();
    assert!(
        recs.contains(&("stdout".into(), "hello\n".into())),
        "{recs:?}"
    );
    assert!(
        recs.contains(&("stderr".into(), "err\n".into())),
        "{recs:?}"
    );
    // Nothing else: the runtime's own messages stay out of the container log.
    assert_eq!(recs.len(), 2, "{recs:?}");
    let started = read_started(&c.dir).expect("started.json");
    assert!(started.pid > 0);
}

#[test]
fn exit_code_is_recorded() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sh", "-c", "exit 3"]);
    let exit = c.run();
    assert_eq!((exit.exit_code, exit.signal), (3, None), "{}", c.shim_log());
}

#[test]
fn killed_container_records_the_signal() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sleep", "100"]);
    let pid = c.start_ok();
    c.kill(pid);
    let exit = c.wait();
    assert_eq!(
        (exit.exit_code, exit.signal),
        (137, Some(9)),
        "{}",
        c.shim_log()
    );
}

#[test]
fn writes_go_to_the_upper_dir_and_the_rootfs_is_unmounted_after_exit() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sh", "-c", "echo data > /newfile; echo more > /etc/passwd"]);
    let passwd_before = std::fs::read(c.layer.join("etc/passwd")).unwrap();
    let exit = c.run();
    assert_eq!(exit.exit_code, 0, "{}", c.shim_log());
    let upper = c.cfg.rootfs.upper.clone();
    assert_eq!(
        std::fs::read_to_string(upper.join("newfile")).unwrap(),
        "data\n"
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/passwd")).unwrap(),
        "more\n"
    );
    assert!(!c.layer.join("newfile").exists());
    assert_eq!(
        std::fs::read(c.layer.join("etc/passwd")).unwrap(),
        passwd_before
    );
    assert!(!is_mounted(&c.cfg.rootfs.target), "rootfs still mounted");
    // libcontainer's state is gone too.
    assert!(!c.dir.join("state").join(&c.cfg.id).exists());
}

#[test]
fn bind_mounts_are_visible_and_read_only_when_asked() {
    if !can_run() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("greeting"), "from the host\n").unwrap();
    let mut c = Ctr::new(&["sh", "-c", "cat /data/greeting; touch /data/new"]);
    c.cfg.mounts = vec![BindMount {
        source: host.path().to_path_buf(),
        destination: "/data".to_string(),
        read_only: true,
        propagation: String::new(),
    }];
    let exit = c.run();
    assert_eq!(c.stdout(), "from the host\n", "{}", c.shim_log());
    assert_ne!(exit.exit_code, 0, "touch on a read-only mount must fail");
    assert!(!host.path().join("new").exists());
}

#[test]
fn named_user_runs_with_its_uid_and_groups() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sh", "-c", "id -u; id -g; id -G; echo $HOME"]);
    c.cfg.user = "user".to_string();
    let exit = c.run();
    assert_eq!(exit.exit_code, 0, "{}", c.shim_log());
    assert_eq!(c.stdout(), "1000\n1000\n1000 10\n/home/user\n");
}

#[test]
fn unknown_user_fails_clearly() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["true"]);
    c.cfg.user = "nobody".to_string();
    let line = c.start();
    assert!(
        line.starts_with("error ") && line.contains("unable to find user nobody"),
        "{line}"
    );
    let exit = c.wait();
    assert!(exit.error.is_some());
    assert!(!is_mounted(&c.cfg.rootfs.target));
}

fn interfaces(c: &Ctr) -> Vec<String> {
    c.stdout()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect()
}

#[test]
fn network_is_private_with_loopback_unless_host_network() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&[
        "sh",
        "-c",
        "cat /proc/net/dev; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags >&2",
    ]);
    assert_eq!(c.run().exit_code, 0, "{}", c.shim_log());
    assert_eq!(interfaces(&c), ["lo"]);
    // lo is up (IFF_UP is bit 0 of the flags).
    let flags = c
        .records()
        .into_iter()
        .filter(|r| r.stream == "stderr")
        .nth(1)
        .map(|r| r.log)
        .unwrap_or_default();
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    assert_eq!(flags & 1, 1, "lo is not up");

    let host: Vec<String> = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    let mut c = Ctr::new(&["cat", "/proc/net/dev"]);
    c.cfg.host_network = true;
    assert_eq!(c.run().exit_code, 0, "{}", c.shim_log());
    let mut got = interfaces(&c);
    got.sort();
    let mut want = host;
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn exec_runs_in_the_running_container() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sh", "-c", "echo box-data > /tmpfile; exec sleep 100"]);
    c.cfg.hostname = Some("box".to_string());
    let pid = c.start_ok();
    // Wait for the container to have written its file.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.cfg.rootfs.upper.join("tmpfile").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, out, err) = c.exec(&["hostname"]);
    assert_eq!((code, out.as_str()), (0, "box\n"), "{err}");
    let (code, out, err) = c.exec(&["cat", "/tmpfile"]);
    assert_eq!((code, out.as_str()), (0, "box-data\n"), "{err}");
    let (code, _, _) = c.exec(&["sh", "-c", "exit 5"]);
    assert_eq!(code, 5);
    let (code, _, _) = c.exec(&["sh", "-c", "kill -9 $$"]);
    assert_eq!(code, 137);
    // The exec'd process gets the caller's stdin.
    let path = c.dir.join("exec-cat.json");
    let exec = ExecConfig {
        args: vec!["cat".into()],
        ..Default::default()
    };
    std::fs::write(&path, serde_json::to_vec(&exec).unwrap()).unwrap();
    let mut child = Command::new(ROS)
        .args(["shim", "exec"])
        .arg(&c.dir)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"through stdin\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");
    let (code, out, err) = c.exec_as(ExecConfig {
        args: vec![
            "sh".into(),
            "-c".into(),
            "id -u; pwd; echo $HOME $FOO".into(),
        ],
        user: "user".into(),
        cwd: "/etc".into(),
        env: vec!["FOO=bar".into()],
        ..Default::default()
    });
    assert_eq!(
        (code, out.as_str()),
        (0, "1000\n/etc\n/home/user bar\n"),
        "{err}"
    );
    let (code, _, err) = c.exec(&["no-such-command"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("no-such-command"), "{err}");
    c.kill(pid);
    assert_eq!(c.wait().exit_code, 137);
}

#[test]
fn missing_executable_is_an_error_with_127() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["no-such-command"]);
    let line = c.start();
    assert!(line.starts_with("error "), "{line}");
    assert!(line.contains("no-such-command"), "{line}");
    let exit = c.wait();
    assert_eq!(exit.exit_code, 127, "{exit:?}");
    assert!(exit
        .error
        .as_deref()
        .unwrap_or("")
        .contains("no-such-command"));
    assert!(!is_mounted(&c.cfg.rootfs.target), "rootfs still mounted");
    assert!(!c.dir.join("state").join(&c.cfg.id).exists());
}

fn cgroup_memory_limit(cgroup_path: &str) -> Option<String> {
    let rel = cgroup_path.trim_start_matches('/');
    [
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.limit_in_bytes"),
        Path::new("/sys/fs/cgroup").join(rel).join("memory.max"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
}

#[test]
fn memory_and_pids_limits_show_in_the_cgroup() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sleep", "100"]);
    c.cfg.resources = Resources {
        memory: Some(64 << 20),
        pids_limit: Some(50),
        ..Default::default()
    };
    let pid = c.start_ok();
    let rel = c.cfg.cgroup_path.trim_start_matches('/').to_string();
    let pids_max = [
        Path::new("/sys/fs/cgroup/pids").join(&rel).join("pids.max"),
        Path::new("/sys/fs/cgroup").join(&rel).join("pids.max"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok());
    assert_eq!(pids_max.as_deref().map(str::trim), Some("50"));
    assert_eq!(
        cgroup_memory_limit(&c.cfg.cgroup_path).as_deref(),
        Some("67108864"),
        "{}",
        c.shim_log()
    );
    c.kill(pid);
    assert_eq!(c.wait().exit_code, 137);
    assert_eq!(
        cgroup_memory_limit(&c.cfg.cgroup_path),
        None,
        "cgroup removed"
    );
}

#[test]
fn many_layers_still_mount() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["cat", "/layer-90"]);
    // 100 layers with long paths: far more than one page of mount options.
    let extra = c._tmp.path().join(format!("layers-{}", "x".repeat(60)));
    let mut lower = vec![c.layer.clone()];
    for i in 0..100 {
        let l = extra.join(format!("{i:064}"));
        std::fs::create_dir_all(&l).unwrap();
        std::fs::write(l.join(format!("layer-{i}")), format!("{i}\n")).unwrap();
        lower.push(l);
    }
    c.cfg.rootfs.lower = lower;
    let exit = c.run();
    assert_eq!(exit.exit_code, 0, "{}", c.shim_log());
    assert_eq!(c.stdout(), "90\n");
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/PID; look at its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn shim_survives_signals_and_the_container_gets_default_dispositions() {
    if !can_run() {
        return;
    }
    // A shell cannot trap a signal that was ignored when it started, so the
    // trap shows that SIGTERM reached the container with its default
    // disposition (and the pid 1 of a namespace only gets handled signals).
    let mut c = Ctr::new(&[
        "sh",
        "-c",
        "trap 'echo got TERM; exit 7' TERM; echo ready; sleep 100 & wait",
    ]);
    let pid = c.start_ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.stdout().contains("ready") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let shim_pid = c.shim.as_ref().unwrap().id();
    for sig in ["-TERM", "-INT", "-HUP", "-PIPE"] {
        let ok = Command::new("kill")
            .args([sig, &shim_pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(shim_pid), "shim died of a signal");
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let exit = c.wait();
    assert_eq!((exit.exit_code, exit.signal), (7, None), "{}", c.shim_log());
    assert!(c.stdout().contains("got TERM"));
}

#[test]
fn a_container_directory_can_be_run_again() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sh", "-c", "echo run >> /runs; cat /runs"]);
    assert_eq!(c.run().exit_code, 0, "{}", c.shim_log());
    let first = c.shim_log();
    assert_eq!(c.run().exit_code, 0, "{first}\n{}", c.shim_log());
    // The upper dir persists between runs, and the log is appended to.
    assert_eq!(c.stdout(), "run\nrun\nrun\n");
}

#[test]
fn read_only_rootfs_refuses_writes() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["touch", "/x"]);
    c.cfg.read_only_rootfs = true;
    let exit = c.run();
    assert_ne!(exit.exit_code, 0, "{}", c.shim_log());
    assert!(!c.cfg.rootfs.upper.join("x").exists());
}

#[test]
fn privileged_sees_host_devices_and_unprivileged_does_not() {
    if !can_run() {
        return;
    }
    // A block device of the host, if there is one.
    let Some(block) = std::fs::read_dir("/dev").unwrap().flatten().find_map(|e| {
        use std::os::unix::fs::FileTypeExt;
        e.file_type()
            .ok()
            .filter(|t| t.is_block_device())
            .map(|_| e.file_name().to_string_lossy().into_owned())
    }) else {
        eprintln!("skipped: the host has no block device");
        return;
    };
    let mut c = Ctr::new(&["ls", "/dev"]);
    assert_eq!(c.run().exit_code, 0, "{}", c.shim_log());
    let unprivileged = c.stdout();
    assert!(!unprivileged.lines().any(|l| l == block), "{unprivileged}");
    assert!(unprivileged.lines().any(|l| l == "null"), "{unprivileged}");

    let mut c = Ctr::new(&["ls", "/dev"]);
    c.cfg.privileged = true;
    assert_eq!(c.run().exit_code, 0, "{}", c.shim_log());
    let privileged = c.stdout();
    assert!(
        privileged.lines().any(|l| l == block),
        "{block} not in {privileged}"
    );
}

#[test]
fn oom_kill_is_recorded() {
    if !can_run() {
        return;
    }
    // The shell keeps the 60 MB in memory; the limit is 16 MB.
    let mut c = Ctr::new(&[
        "sh",
        "-c",
        "a=$(head -c 60000000 /dev/urandom); echo survived",
    ]);
    c.cfg.resources.memory = Some(16 << 20);
    let exit = c.run();
    assert!(exit.oom_killed, "{exit:?}\n{}", c.shim_log());
    assert_eq!(exit.exit_code, 137);
    assert!(!c.stdout().contains("survived"));
}

#[test]
fn working_directory_is_created_when_missing() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["pwd"]);
    c.cfg.cwd = "/app/work".to_string();
    let exit = c.run();
    assert_eq!(exit.exit_code, 0, "{exit:?}\n{}", c.shim_log());
    assert_eq!(c.stdout(), "/app/work\n");
}

#[test]
fn an_image_without_layers_runs_on_an_empty_lower_dir() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sh", "-c", "ls /"]);
    c.cfg.rootfs.lower.clear();
    c.cfg.mounts = vec![BindMount {
        source: c.layer.join("bin"),
        destination: "/bin".to_string(),
        read_only: true,
        propagation: String::new(),
    }];
    let exit = c.run();
    assert_eq!(exit.exit_code, 0, "{exit:?}\n{}", c.shim_log());
    let listing: Vec<String> = c.stdout().lines().map(String::from).collect();
    assert!(listing.contains(&"bin".to_string()), "{listing:?}");
    assert!(!listing.contains(&"etc".to_string()), "{listing:?}");
}

#[test]
fn the_shim_does_not_need_the_engine() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sh", "-c", "sleep 0.3; echo still here"]);
    std::fs::write(
        c.dir.join("run.json"),
        serde_json::to_vec_pretty(&c.cfg).unwrap(),
    )
    .unwrap();
    // The engine goes away at once: nobody reads the status line.
    let mut child = Command::new(ROS)
        .args(["shim", "run"])
        .arg(&c.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(c.dir.join("shim.log")).unwrap())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    c.shim = Some(child);
    let exit = c.wait();
    assert_eq!(exit.exit_code, 0, "{exit:?}\n{}", c.shim_log());
    assert_eq!(c.stdout(), "still here\n");
}

fn cap_eff(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in {status:?}"))
}

#[test]
fn privileged_exec_gets_every_capability() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sleep", "100"]);
    let pid = c.start_ok();
    let read_caps = |privileged| {
        let (code, out, err) = c.exec_as(ExecConfig {
            args: vec!["grep".into(), "CapEff".into(), "/proc/self/status".into()],
            privileged,
            ..Default::default()
        });
        assert_eq!(code, 0, "{err}");
        cap_eff(&out)
    };
    let normal = read_caps(false);
    let privileged = read_caps(true);
    const SYS_ADMIN: u64 = 1 << 21;
    assert_eq!(normal & SYS_ADMIN, 0);
    assert_ne!(privileged & SYS_ADMIN, 0);
    assert_eq!(privileged & normal, normal);
    c.kill(pid);
    c.wait();
}

#[test]
fn a_killed_shim_leaves_nothing_that_blocks_a_restart() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sleep", "100"]);
    let pid = c.start_ok();
    let mut shim = c.shim.take().unwrap();
    shim.kill().unwrap();
    shim.wait().unwrap();
    c.kill(pid);
    assert!(is_mounted(&c.cfg.rootfs.target));
    assert!(c.dir.join("state").join(&c.cfg.id).exists());

    c.cfg.args = vec!["echo".into(), "again".into()];
    let exit = c.run();
    assert_eq!(exit.exit_code, 0, "{exit:?}\n{}", c.shim_log());
    assert_eq!(c.stdout(), "again\n");
    assert!(!is_mounted(&c.cfg.rootfs.target));
}

#[test]
fn an_unsafe_container_id_is_refused() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["true"]);
    c.cfg.id = "../escape".to_string();
    let line = c.start();
    assert!(
        line.starts_with("error ") && line.contains("invalid container id"),
        "{line}"
    );
    assert_eq!(c.wait().exit_code, 125);
}

#[test]
fn with_the_host_pid_namespace_the_container_ends_with_its_first_process() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sh", "-c", "sleep 100 & echo $! > /bg.pid"]);
    c.cfg.host_pid = true;
    let started = Instant::now();
    let exit = c.run();
    assert_eq!(exit.exit_code, 0, "{exit:?}\n{}", c.shim_log());
    let bg: u32 = std::fs::read_to_string(c.cfg.rootfs.upper.join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(bg), "background process {bg} survived its container");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_lot_of_output_is_all_logged_and_rotated() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done",
    ]);
    c.cfg.log_max_bytes = 1 << 20;
    assert_eq!(c.run().exit_code, 0, "{}", c.shim_log());
    let rotated = c.cfg.log_path.with_extension("log.1");
    let old: Vec<LogRecord> = std::fs::read_to_string(&rotated)
        .unwrap_or_else(|e| panic!("no {}: {e}", rotated.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let all: Vec<String> = old.into_iter().chain(c.records()).map(|r| r.log).collect();
    // About 20000 records of ~90 bytes: one rotation, nothing lost since.
    assert_eq!(all.last().map(String::as_str), Some("line 19999\n"));
    let first: usize = all[0]
        .trim()
        .strip_prefix("line ")
        .unwrap()
        .parse()
        .unwrap();
    let expected: Vec<String> = (first..20000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(all, expected);
    assert!(std::fs::metadata(&c.cfg.log_path).unwrap().len() <= 1 << 20);
}

#[test]
fn oom_score_adj_is_the_container_s_not_the_shim_s() {
    if !can_run() {
        return;
    }
    let mut c = Ctr::new(&["sh", "-c", "cat /proc/self/oom_score_adj; sleep 100"]);
    c.cfg.oom_score_adj = Some(500);
    let pid = c.start_ok();
    let shim_pid = c.shim.as_ref().unwrap().id();
    let before = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.stdout().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.stdout(), "500\n");
    let shim_score = std::fs::read_to_string(format!("/proc/{shim_pid}/oom_score_adj")).unwrap();
    assert_eq!(shim_score, before);
    c.kill(pid);
    c.wait();
}

//! `cargo xtask bench`: the benchmarks behind the design's targets.
//!
//! # `engine`
//!
//! Measures what a container start costs, side by side in one run:
//!
//! - **ours**: create + start + wait + delete of a container running
//!   `/bin/true`, through the Docker Engine API on the daemon's unix socket,
//!   as any client would (bollard);
//! - **runc**: `runc run` of an OCI bundle whose rootfs is the same busybox
//!   layer (`runc spec`, then args `/bin/true`, no terminal, writable root).
//!   `runc run` creates, starts, waits for and deletes the container too.
//!
//! The two workloads alternate run by run, after a short warm-up, so that a
//! slow phase of the machine hits both alike. The report gives the median and
//! the 90th percentile of each (and, for ours, the median of each API call),
//! the ratio ours/runc (target: at most 0.5), and
//! the daemon's resident memory (VmRSS) after the runs and 2 s of idling
//! (target: under 10 MB).
//!
//! Everything lives in one temporary directory (the daemon's data-root, its
//! socket, the runc bundle and state); on the way out, success or not, the
//! daemon is killed, any process left from a container is killed, everything
//! mounted below the directory is unmounted and the directory removed.

use crate::cmd::{cargo, is_root, run_step, target_dir};
use anyhow::{bail, ensure, Context, Result};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{ImportImageOptions, RemoveContainerOptions};
use bollard::Docker;
use clap::Subcommand;
use futures_util::TryStreamExt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum Bench {
    /// Container start through the system engine's API against `runc run`,
    /// and the daemon's idle memory.
    ///
    /// Example: `sudo cargo xtask bench engine --runs 100`.
    Engine {
        /// How many measured runs of each workload.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
    },
}

pub fn run(bench: &Bench) -> Result<()> {
    match bench {
        Bench::Engine { runs } => engine(*runs as usize),
    }
}

/// The image the benchmark loads into the engine.
const IMAGE: &str = "oxos-bench/busybox:latest";
/// Unmeasured runs of each workload before the measured ones.
const WARMUP: usize = 3;
/// Targets from the design.
const TARGET_RATIO: f64 = 0.5;
const TARGET_RSS_KB: u64 = 10_000;

fn engine(runs: usize) -> Result<()> {
    ensure!(
        is_root(),
        "the engine benchmark runs real containers: run it as root"
    );
    let runc = which("runc")
        .context("runc not found on PATH: it is the benchmark's baseline (apt-get install runc)")?;
    run_step(
        "release build of ros",
        cargo().args(["build", "--release", "--package", "ros"]),
    )?;
    let ros = target_dir().join("release/ros");

    let mut env = BenchEnv::new()?;
    let socket = env.dir().join("engine.sock");
    env.start_daemon(&ros, &socket)?;
    let bundle = env.dir().join("bundle");
    make_runc_bundle(&runc, &bundle)?;
    let runc_root = env.dir().join("runc-state");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let docker = rt.block_on(connect(&socket, &mut env))?;
    rt.block_on(load_image(&docker))?;

    eprintln!("xtask: warming up ({WARMUP} runs of each)");
    for i in 0..WARMUP {
        rt.block_on(ours_once(&docker))?;
        runc_once(
            &runc,
            &runc_root,
            &bundle,
            &format!("oxos-bench-warmup-{i}"),
        )?;
    }
    eprintln!("xtask: measuring {runs} runs of each, alternating");
    let mut ours = Vec::with_capacity(runs);
    let mut phases: [Vec<Duration>; 4] = Default::default();
    let mut theirs = Vec::with_capacity(runs);
    for i in 0..runs {
        let run = rt.block_on(ours_once(&docker))?;
        ours.push(run.total);
        for (samples, d) in phases.iter_mut().zip(run.phases) {
            samples.push(d);
        }
        theirs.push(runc_once(
            &runc,
            &runc_root,
            &bundle,
            &format!("oxos-bench-{i}"),
        )?);
    }
    drop(docker);

    std::thread::sleep(Duration::from_secs(2));
    let rss_kb = env.daemon_rss_kb()?;

    let ours = Stats::of(&mut ours);
    let phases = phases.map(|mut p| Stats::of(&mut p).median);
    let theirs = Stats::of(&mut theirs);
    print_report(runs, &ours, &phases, &theirs, rss_kb);
    Ok(())
}

/// Median and 90th percentile (nearest rank) of a set of durations.
struct Stats {
    median: Duration,
    p90: Duration,
}

impl Stats {
    fn of(samples: &mut [Duration]) -> Self {
        samples.sort();
        let rank = |p: f64| {
            // nearest-rank percentile: the smallest sample with at least p of
            // the samples at or below it
            let n = samples.len();
            let k = ((p * n as f64).ceil() as usize).clamp(1, n);
            samples[k - 1]
        };
        Self {
            median: rank(0.5),
            p90: rank(0.9),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn print_report(runs: usize, ours: &Stats, phases: &[Duration; 4], theirs: &Stats, rss_kb: u64) {
    let ratio = ms(ours.median) / ms(theirs.median);
    let ratio90 = ms(ours.p90) / ms(theirs.p90);
    println!();
    println!("engine benchmark: create + start + wait + delete of a /bin/true container");
    println!("{runs} measured runs of each workload, alternating, after {WARMUP} warm-up runs");
    println!();
    println!("{:<38} {:>10} {:>10}", "workload", "median", "p90");
    println!(
        "{:<38} {:>7.2} ms {:>7.2} ms",
        "oxos system engine (Engine API)",
        ms(ours.median),
        ms(ours.p90)
    );
    for (name, d) in PHASES.iter().zip(phases) {
        println!("{:<38} {:>7.2} ms", format!("  {name}"), ms(*d));
    }
    println!(
        "{:<38} {:>7.2} ms {:>7.2} ms",
        "runc run (same busybox rootfs)",
        ms(theirs.median),
        ms(theirs.p90)
    );
    println!(
        "{:<38} {:>10.2} {:>10.2}   target <= {TARGET_RATIO}: {}",
        "ratio oxos/runc",
        ratio,
        ratio90,
        verdict(ratio <= TARGET_RATIO)
    );
    println!();
    println!(
        "daemon idle VmRSS (after the runs and 2 s idle): {:.1} MB ({rss_kb} kB)   \
         target < 10 MB: {}",
        rss_kb as f64 * 1024.0 / 1e6,
        verdict(rss_kb * 1024 < TARGET_RSS_KB * 1000)
    );
}

async fn connect(socket: &Path, env: &mut BenchEnv) -> Result<Docker> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        env.check_daemon_alive()?;
        if socket.exists() {
            let docker = Docker::connect_with_unix(
                &socket.to_string_lossy(),
                120,
                bollard::API_DEFAULT_VERSION,
            )
            .context("cannot connect to the daemon's socket")?;
            if docker.ping().await.is_ok() {
                return Ok(docker);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon did not answer /_ping on {} within 30 s; its log:\n{}",
                socket.display(),
                env.daemon_log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn load_image(docker: &Docker) -> Result<()> {
    let archive = crate::testimage::busybox_docker_archive(IMAGE)?;
    docker
        .import_image(
            ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            bollard::body_full(archive.into()),
            None,
        )
        .try_collect::<Vec<_>>()
        .await
        .context("cannot load the busybox image into the engine")?;
    docker
        .inspect_image(IMAGE)
        .await
        .with_context(|| format!("the engine does not list {IMAGE} after loading it"))?;
    Ok(())
}

/// The API calls of one run of ours, in order.
const PHASES: [&str; 4] = ["create", "start", "wait", "delete"];

/// One run of ours: the whole and each of its [`PHASES`].
struct OursRun {
    total: Duration,
    phases: [Duration; 4],
}

/// One create + start + wait + delete through the API.
async fn ours_once(docker: &Docker) -> Result<OursRun> {
    let t0 = Instant::now();
    let created = docker
        .create_container(
            None,
            ContainerCreateBody {
                image: Some(IMAGE.to_string()),
                cmd: Some(vec!["/bin/true".to_string()]),
                ..Default::default()
            },
        )
        .await
        .context("create of the benchmark container failed")?;
    let id = created.id;
    let t1 = Instant::now();
    docker
        .start_container(&id, None)
        .await
        .with_context(|| format!("start of container {id} failed"))?;
    let t2 = Instant::now();
    let waited = docker
        .wait_container(&id, None)
        .try_next()
        .await
        .with_context(|| format!("wait for container {id} failed"))?;
    let t3 = Instant::now();
    docker
        .remove_container(&id, None::<RemoveContainerOptions>)
        .await
        .with_context(|| format!("delete of container {id} failed"))?;
    let t4 = Instant::now();
    let code = waited.map(|w| w.status_code);
    ensure!(
        code == Some(0),
        "container {id} running /bin/true exited with {code:?} instead of 0"
    );
    Ok(OursRun {
        total: t4 - t0,
        phases: [t1 - t0, t2 - t1, t3 - t2, t4 - t3],
    })
}

/// One `runc run` of the bundle (create, start, wait and delete).
fn runc_once(runc: &Path, root: &Path, bundle: &Path, id: &str) -> Result<Duration> {
    let t0 = Instant::now();
    let out = Command::new(runc)
        .arg("--root")
        .arg(root)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run runc")?;
    let elapsed = t0.elapsed();
    ensure!(
        out.status.success(),
        "runc run {id} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(elapsed)
}

/// An OCI bundle for runc from the busybox layer: `runc spec`, then args
/// `/bin/true`, no terminal, writable root.
fn make_runc_bundle(runc: &Path, bundle: &Path) -> Result<()> {
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs)
        .with_context(|| format!("cannot create {}", rootfs.display()))?;
    let layer = crate::testimage::busybox_rootfs_tar()?;
    tar::Archive::new(layer.as_slice())
        .unpack(&rootfs)
        .with_context(|| format!("cannot unpack the busybox layer into {}", rootfs.display()))?;
    run_step(
        "runc spec",
        Command::new(runc).arg("spec").arg("--bundle").arg(bundle),
    )?;
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_reader(
        File::open(&path).with_context(|| format!("cannot open {}", path.display()))?,
    )
    .with_context(|| format!("cannot parse {}", path.display()))?;
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["root"]["readonly"] = serde_json::json!(false);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The benchmark's temporary directory and daemon; see the module docs for
/// what dropping it cleans up.
struct BenchEnv {
    dir: Option<tempfile::TempDir>,
    daemon: Option<Child>,
}

impl BenchEnv {
    fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("oxos-bench-")
            .tempdir()
            .context("cannot create the benchmark's temporary directory")?;
        Ok(Self {
            dir: Some(dir),
            daemon: None,
        })
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or_else(|| Path::new("/nonexistent"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("daemon.log")
    }

    fn start_daemon(&mut self, ros: &Path, socket: &Path) -> Result<()> {
        let log = File::create(self.log_path()).context("cannot create the daemon log")?;
        let child = Command::new(ros)
            .arg("system-dockerd")
            .arg("--data-root")
            .arg(self.dir().join("data"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the daemon log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {} system-dockerd", ros.display()))?;
        self.daemon = Some(child);
        Ok(())
    }

    fn check_daemon_alive(&mut self) -> Result<()> {
        if let Some(child) = self.daemon.as_mut() {
            if let Some(status) = child.try_wait().context("cannot wait for the daemon")? {
                bail!(
                    "the daemon exited at start ({status}); its log:\n{}",
                    self.daemon_log_tail()
                );
            }
        }
        Ok(())
    }

    fn daemon_log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn daemon_rss_kb(&self) -> Result<u64> {
        let pid = self
            .daemon
            .as_ref()
            .map(|c| c.id())
            .context("the daemon is not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status: did the daemon die?"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
    }
}

impl Drop for BenchEnv {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let Some(dir) = self.dir.take() else { return };
        crate::cleanup::kill_processes_under(dir.path());
        crate::cleanup::unmount_under(dir.path());
        if let Err(e) = dir.close() {
            eprintln!("xtask: warning: cannot remove the benchmark directory: {e}");
        }
    }
}

//! Runs the console's programs (sshd, the gettys), restarts each when it
//! exits, and stops them all on SIGTERM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

/// A program to keep running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// For the log: `sshd`, `getty tty1`.
    pub name: String,
    pub argv: Vec<String>,
    /// Start with stdin and stdout on /dev/null (a getty opens its tty
    /// itself); stderr always goes to the console's log.
    pub stdio_null: bool,
}

/// How long restarts wait.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first wait after a quick exit.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
    /// A run at least this long counts as healthy: the next start is at
    /// once (a getty exits at every logout) and the wait starts over.
    pub healthy: Duration,
    /// How long a program has to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            healthy: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// Keeps `program` running until `stop` turns true; then sends it SIGTERM
/// (SIGKILL after the timeout) and returns. Returns how many times it was
/// started.
pub async fn keep_running(
    program: Program,
    backoff: Backoff,
    mut stop: watch::Receiver<bool>,
) -> u32 {
    let mut wait = backoff.first;
    let mut starts = 0;
    let Some((path, args)) = program.argv.split_first() else {
        tracing::error!("{}: nothing to run", program.name);
        return 0;
    };
    loop {
        if *stop.borrow() {
            return starts;
        }
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(path);
        cmd.args(args);
        if program.stdio_null {
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
        }
        starts += 1;
        match cmd.spawn() {
            Err(e) => tracing::error!("failed to start {} ({path}): {e}", program.name),
            Ok(mut child) => {
                let pid = child.id();
                tracing::debug!("{} started (pid {})", program.name, pid.unwrap_or(0));
                tokio::select! {
                    status = child.wait() => match status {
                        Ok(status) => tracing::info!("{} exited ({status})", program.name),
                        Err(e) => tracing::error!("{}: failed to wait: {e}", program.name),
                    },
                    _ = stop.changed() => {
                        terminate(&program.name, &mut child, pid, backoff.stop_timeout).await;
                        return starts;
                    }
                }
            }
        }
        let delay = if started.elapsed() >= backoff.healthy {
            wait = backoff.first;
            Duration::ZERO
        } else {
            let delay = wait;
            wait = (wait * 2).min(backoff.max);
            tracing::info!("restarting {} in {}s", program.name, delay.as_secs_f32());
            delay
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return starts,
        }
    }
}

async fn terminate(
    name: &str,
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    timeout: Duration,
) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(_) => tracing::debug!("{name} stopped"),
        Err(_) => {
            tracing::warn!(
                "{name} did not stop within {}s, killing it",
                timeout.as_secs()
            );
            let _ = child.kill().await;
        }
    }
}

/// Runs each of `scripts` once, one after the other, its output going to
/// the log; stops the one running when `stop` turns true.
pub async fn run_once(scripts: Vec<Program>, timeout: Duration, mut stop: watch::Receiver<bool>) {
    for script in scripts {
        if *stop.borrow() {
            return;
        }
        let Some((path, args)) = script.argv.split_first() else {
            continue;
        };
        let mut cmd = tokio::process::Command::new(path);
        cmd.args(args).stdin(Stdio::null());
        // Its output is the console's log, as RancherOS had it.
        cmd.stdout(Stdio::inherit());
        match cmd.spawn() {
            Err(e) => tracing::error!("failed to run {}: {e}", script.name),
            Ok(mut child) => {
                tracing::info!("running {}", script.name);
                let pid = child.id();
                tokio::select! {
                    status = child.wait() => match status {
                        Ok(s) if s.success() => tracing::info!("{} finished", script.name),
                        Ok(s) => tracing::warn!("{} failed ({s})", script.name),
                        Err(e) => tracing::error!("{}: failed to wait: {e}", script.name),
                    },
                    _ = stop.changed() => {
                        terminate(&script.name, &mut child, pid, timeout).await;
                        return;
                    }
                }
            }
        }
    }
}

/// Runs `programs` until SIGTERM or SIGINT, then stops them all; `scripts`
/// run once beside them, and so do the `background` ones, at the same time
/// as the scripts.
pub async fn run(
    programs: Vec<Program>,
    scripts: Vec<Program>,
    background: Vec<Program>,
    backoff: Backoff,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    let mut tasks: Vec<_> = programs
        .into_iter()
        .map(|p| {
            let rx = rx.clone();
            tokio::spawn(async move {
                keep_running(p, backoff, rx).await;
            })
        })
        .collect();
    for once in [scripts, background] {
        tasks.push(tokio::spawn(run_once(
            once,
            backoff.stop_timeout,
            rx.clone(),
        )));
    }
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    let _ = tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> Backoff {
        Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
            healthy: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn a_program_that_exits_is_started_again_with_growing_waits() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("starts");
        let program = Program {
            name: "t".into(),
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo x >> {}", log.display()),
            ],
            stdio_null: true,
        };
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(keep_running(program, quick(), rx));
        // Waits 50, 100, 200, 200 ms: five starts take about 550 ms.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tx.send(true).unwrap();
        let starts = task.await.unwrap();
        let lines = std::fs::read_to_string(&log).unwrap().lines().count() as u32;
        // Every start ran the program; the last one may have been stopped
        // before it wrote its line.
        assert!(
            lines == starts || lines + 1 == starts,
            "{lines} lines for {starts} starts"
        );
        assert!((4..=8).contains(&starts), "{starts} starts");
    }

    #[tokio::test]
    async fn stop_terminates_a_running_program() {
        let tmp = tempfile::tempdir().unwrap();
        let flag = tmp.path().join("term");
        // The program notes SIGTERM in a file and exits.
        let program = Program {
            name: "t".into(),
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "trap 'touch {}; exit 0' TERM; while :; do sleep 0.05; done",
                    flag.display()
                ),
            ],
            stdio_null: true,
        };
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(keep_running(program, quick(), rx));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        tx.send(true).unwrap();
        assert_eq!(task.await.unwrap(), 1);
        assert!(flag.exists(), "no SIGTERM seen");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "waited for the kill timeout"
        );
    }

    #[tokio::test]
    async fn scripts_run_once_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("log");
        let script = |word: &str| Program {
            name: word.into(),
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo {word} >> {}; exit 3", log.display()),
            ],
            stdio_null: false,
        };
        let (_tx, rx) = watch::channel(false);
        run_once(
            vec![script("first"), script("second")],
            Duration::from_secs(1),
            rx,
        )
        .await;
        // A failing script does not stop the next one.
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");
    }

    #[tokio::test]
    async fn a_program_that_ignores_sigterm_is_killed() {
        let program = Program {
            name: "t".into(),
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "trap '' TERM; while :; do sleep 0.05; done".into(),
            ],
            stdio_null: true,
        };
        let mut b = quick();
        b.stop_timeout = Duration::from_millis(300);
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(keep_running(program, b, rx));
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("not killed")
            .unwrap();
    }
}

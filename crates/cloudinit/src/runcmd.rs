//! `runcmd`: commands run in order, their output on stderr.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use config::Value;

use crate::error::{Error, Result};

/// The argv of an entry: a string runs through `/bin/sh -c`, a list runs
/// directly (its scalars as text).
pub fn argv(entry: &Value) -> Result<Vec<String>> {
    match entry {
        Value::String(s) => Ok(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
        Value::Sequence(items) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                other => Err(Error::Command(config::kind(other))),
            })
            .collect(),
        Value::Sequence(_) => Err(Error::Command("an empty list")),
        other => Err(Error::Command(config::kind(other))),
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code (0 is success).
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

/// Runs `argv`, each line of its stdout and stderr copied to our stderr after
/// `prefix`; waits for it.
pub fn run(argv: &[String], prefix: &str) -> std::io::Result<Outcome> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let copy = |stream: Option<Box<dyn Read + Send>>, prefix: String| {
        std::thread::spawn(move || {
            if let Some(stream) = stream {
                for line in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
                    eprintln!("{prefix}{}", String::from_utf8_lossy(&line));
                }
            }
        })
    };
    let out = copy(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        prefix.to_owned(),
    );
    let err = copy(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        prefix.to_owned(),
    );
    let status = child.wait()?;
    let _ = out.join();
    let _ = err.join();
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => Outcome::Exited(code),
        (None, Some(sig)) => Outcome::Signaled(sig),
        (None, None) => Outcome::Exited(-1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_argv() {
        let v = |s: &str| serde_norway::from_str::<Value>(s).unwrap();
        assert_eq!(argv(&v("echo hi")).unwrap(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(argv(&v("[ls, -l, 3]")).unwrap(), ["ls", "-l", "3"]);
        assert!(argv(&v("[]")).is_err());
        assert!(argv(&v("{a: b}")).is_err());
        assert!(argv(&v("[ls, [x]]")).is_err());
    }

    #[test]
    fn reports_exit_codes() {
        let sh = |c: &str| vec!["/bin/sh".to_owned(), "-c".to_owned(), c.to_owned()];
        assert_eq!(run(&sh("exit 3"), "t: ").unwrap(), Outcome::Exited(3));
        assert_eq!(
            run(&sh("echo out; echo err >&2"), "t: ").unwrap(),
            Outcome::Exited(0)
        );
        assert_eq!(run(&sh("kill -9 $$"), "t: ").unwrap(), Outcome::Signaled(9));
        assert!(run(&["/nonexistent/prog".to_owned()], "t: ").is_err());
    }
}

//! The container log: stdout and stderr as JSON lines ([`LogRecord`]).
//!
//! Output is cut into lines as Docker's json-file driver does: each record
//! holds one line with its newline; a line longer than [`MAX_LOG_LINE`] is cut
//! into several records, and what is left when a stream closes is written
//! without a newline. When the file would grow past its size limit it is
//! renamed to `NAME.1` (replacing an older one) and a new file is started.
//! Write errors (a full disk) are logged and the record dropped: the shim must
//! keep draining the pipes or the container would block on its output.

use crate::protocol::{now_rfc3339, LogRecord, MAX_LOG_LINE};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends records to the log file, rotating it once past `max_bytes`.
pub struct LogWriter {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    size: u64,
}

impl LogWriter {
    /// Opens (appends to) `path`; `max_bytes` 0 means no limit.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<LogWriter> {
        let mut w = LogWriter {
            path: path.to_path_buf(),
            max_bytes,
            file: None,
            size: 0,
        };
        w.reopen()?;
        Ok(w)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(".1");
        std::fs::rename(&self.path, &rotated)?;
        self.reopen()
    }

    /// Writes one record of `stream` ("stdout" or "stderr").
    pub fn write(&mut self, stream: &str, data: &[u8]) {
        let record = LogRecord {
            log: String::from_utf8_lossy(data).into_owned(),
            stream: stream.to_string(),
            time: now_rfc3339(),
        };
        let mut line = match serde_json::to_vec(&record) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("failed to encode log record: {e}");
                return;
            }
        };
        line.push(b'\n');
        if self.max_bytes > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            if let Err(e) = self.rotate() {
                tracing::warn!("failed to rotate {}: {e}", self.path.display());
            }
        }
        if self.file.is_none() {
            if let Err(e) = self.reopen() {
                tracing::warn!("failed to open {}: {e}", self.path.display());
                return;
            }
        }
        if let Some(f) = self.file.as_mut() {
            match f.write_all(&line) {
                Ok(()) => self.size += line.len() as u64,
                Err(e) => tracing::warn!("failed to write {}: {e}", self.path.display()),
            }
        }
    }
}

/// Cuts one stream into lines.
pub struct LineSplitter {
    stream: &'static str,
    buf: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: &'static str) -> Self {
        LineSplitter {
            stream,
            buf: Vec::new(),
        }
    }

    /// Adds output; every complete line (or full [`MAX_LOG_LINE`] piece) is
    /// written to `log`.
    pub fn feed(&mut self, mut data: &[u8], log: &mut LogWriter) {
        while !data.is_empty() {
            let room = MAX_LOG_LINE - self.buf.len();
            let take = data.len().min(room);
            match data[..take].iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    self.buf.extend_from_slice(&data[..=nl]);
                    log.write(self.stream, &self.buf);
                    self.buf.clear();
                    data = &data[nl + 1..];
                }
                None => {
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() >= MAX_LOG_LINE {
                        log.write(self.stream, &self.buf);
                        self.buf.clear();
                    }
                }
            }
        }
    }

    /// The stream closed: writes what is left.
    pub fn finish(&mut self, log: &mut LogWriter) {
        if !self.buf.is_empty() {
            log.write(self.stream, &self.buf);
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &Path) -> Vec<LogRecord> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_are_split_and_partial_lines_flushed_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = LogWriter::open(&path, 0).unwrap();
        let mut out = LineSplitter::new("stdout");
        let mut err = LineSplitter::new("stderr");
        out.feed(b"hel", &mut log);
        err.feed(b"oops\n", &mut log);
        out.feed(b"lo\nwor", &mut log);
        out.feed(b"ld\nlast", &mut log);
        out.finish(&mut log);
        err.finish(&mut log);
        let got: Vec<(String, String)> = records(&path)
            .into_iter()
            .map(|r| (r.stream, r.log))
            .collect();
        let want = [
            ("stderr", "oops\n"),
            ("stdout", "hello\n"),
            ("stdout", "world\n"),
            ("stdout", "last"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(s, l)| (s.to_string(), l.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn long_lines_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = LogWriter::open(&path, 0).unwrap();
        let mut out = LineSplitter::new("stdout");
        let mut data = vec![b'x'; MAX_LOG_LINE + 10];
        data.push(b'\n');
        out.feed(&data, &mut log);
        let r = records(&path);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].log.len(), MAX_LOG_LINE);
        assert_eq!(r[1].log, format!("{}\n", "x".repeat(10)));
    }

    #[test]
    fn rotates_once_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = LogWriter::open(&path, 300).unwrap();
        let mut out = LineSplitter::new("stdout");
        for i in 0..20 {
            out.feed(format!("line {i}\n").as_bytes(), &mut log);
        }
        let current = records(&path);
        let old = records(&dir.path().join("c.log.1"));
        assert!(std::fs::metadata(&path).unwrap().len() <= 300);
        assert!(std::fs::metadata(dir.path().join("c.log.1")).unwrap().len() <= 300);
        assert_eq!(current.last().unwrap().log, "line 19\n");
        // Only one old file is kept; the newest records are all there, in order.
        let all: Vec<String> = old.iter().chain(&current).map(|r| r.log.clone()).collect();
        let n = all.len();
        let expected: Vec<String> = (20 - n..20).map(|i| format!("line {i}\n")).collect();
        assert_eq!(all, expected);
        assert!(!dir.path().join("c.log.2").exists());
    }
}

//! Container logs: reading the shim's json-file log, `--tail` and `--follow`.

use crate::engine::Container;
use crate::record::Status;
use bytes::{BufMut, Bytes, BytesMut};
use runtime::protocol::LogRecord;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// Only records at or after this unix time.
    pub since: Option<i64>,
}

/// Stream ids of Docker's multiplexed stream format.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// One frame of Docker's multiplexed stream: [stream, 0, 0, 0, len (u32 BE)] then payload.
pub fn frame(stream: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u8(stream);
    b.put_bytes(0, 3);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

fn render(rec: &LogRecord, opts: &LogOptions) -> Option<Bytes> {
    let stream = match rec.stream.as_str() {
        "stderr" if opts.stderr => STDERR,
        "stdout" if opts.stdout => STDOUT,
        _ => return None,
    };
    if let Some(since) = opts.since {
        let t = crate::fsutil::parse_time(&rec.time)
            .map(|t| t.timestamp())
            .unwrap_or(0);
        if t < since {
            return None;
        }
    }
    if opts.timestamps {
        let mut line = rec.time.clone().into_bytes();
        line.push(b' ');
        line.extend_from_slice(rec.log.as_bytes());
        Some(frame(stream, &line))
    } else {
        Some(frame(stream, rec.log.as_bytes()))
    }
}

/// Streams the container's log as frames into a channel, until the end of
/// the log, or with `follow` until the container stopped and its log is drained.
pub fn stream(c: Arc<Container>, opts: LogOptions) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        if let Err(e) = pump(&c, &opts, &tx).await {
            tracing::debug!(container = %c.id, "log stream ended: {e}");
        }
    });
    rx
}

async fn pump(c: &Container, opts: &LogOptions, tx: &mpsc::Sender<Bytes>) -> std::io::Result<()> {
    let path = c.log_path();
    let rotated = path.with_extension("log.1");
    // The history: rotated file first, then the current one, tail applied over both.
    let mut history: std::collections::VecDeque<Bytes> = Default::default();
    let mut keep = |b: Bytes| {
        history.push_back(b);
        if let Some(n) = opts.tail {
            while history.len() > n {
                history.pop_front();
            }
        }
    };
    if let Ok(text) = tokio::fs::read_to_string(&rotated).await {
        for line in text.lines() {
            if let Some(b) = serde_json::from_str::<LogRecord>(line)
                .ok()
                .and_then(|r| render(&r, opts))
            {
                keep(b);
            }
        }
    }
    let mut offset = 0u64;
    for b in read_from(&path, &mut offset, opts).await? {
        keep(b);
    }
    if opts.tail == Some(0) {
        history.clear();
    }
    for b in history {
        if tx.send(b).await.is_err() {
            return Ok(());
        }
    }
    if !opts.follow {
        return Ok(());
    }
    // Follow: poll the file for new complete lines until the container is
    // stopped (and then once more, to drain what it wrote last).
    let mut rx = c.subscribe();
    loop {
        let running = matches!(
            c.snapshot().state.status,
            Status::Running | Status::Restarting
        ) && !c.is_removed();
        for b in read_from(&path, &mut offset, opts).await? {
            if tx.send(b).await.is_err() {
                return Ok(());
            }
        }
        if !running {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = rx.changed() => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}

/// The complete records of the log file from `offset` on, rendered; moves
/// `offset` past them. A file shorter than `offset` was rotated: read it from
/// its start.
async fn read_from(
    path: &std::path::Path,
    offset: &mut u64,
    opts: &LogOptions,
) -> std::io::Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return Ok(out);
    };
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    if len < *offset {
        *offset = 0;
    }
    f.seek(std::io::SeekFrom::Start(*offset)).await?;
    let mut reader = BufReader::new(f);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).await?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(out);
        }
        *offset += n as u64;
        if let Some(b) = serde_json::from_str::<LogRecord>(&line)
            .ok()
            .and_then(|r| render(&r, opts))
        {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_docker_header() {
        let f = frame(STDERR, b"hi\n");
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(&f[8..], b"hi\n");
    }

    #[test]
    fn render_filters_streams_and_adds_timestamps() {
        let rec = LogRecord {
            log: "x\n".into(),
            stream: "stderr".into(),
            time: "2024-01-01T00:00:00Z".into(),
        };
        let only_stdout = LogOptions {
            stdout: true,
            ..Default::default()
        };
        assert!(render(&rec, &only_stdout).is_none());
        let ts = LogOptions {
            stderr: true,
            timestamps: true,
            ..Default::default()
        };
        let b = render(&rec, &ts).unwrap();
        assert_eq!(&b[8..], b"2024-01-01T00:00:00Z x\n");
    }
}

//! `exec`: run a command in a running container.
//!
//! The exec is created, then started on a hijacked connection (as the docker
//! CLI does); its output arrives multiplexed in Docker's stream format (an
//! 8-byte header per frame: stream 1 stdout or 2 stderr, then the big-endian
//! length) and is written to our stdout and stderr. With `-i`, our stdin is
//! copied to the connection and its write side closed at end of input. The
//! exit code is read with an exec inspect once the output ends.

use std::time::Duration;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::ExecArgs;
use crate::client::{encode, Engine, Hijacked};
use crate::commands::{err_out, out, reader_stream};
use crate::error::{Error, Result};

/// Splits Docker's multiplexed stream into (stream, payload) pieces. A stream
/// that does not start with a frame header is raw output (a TTY) and is
/// passed through as stdout.
#[derive(Default)]
pub struct Demux {
    buf: BytesMut,
    raw: Option<bool>,
}

/// Stream number of stdout in Docker's framing.
pub const STDOUT: u8 = 1;
/// Stream number of stderr.
pub const STDERR: u8 = 2;

impl Demux {
    /// Feeds bytes; returns the complete pieces they finish.
    pub fn push(&mut self, data: &[u8]) -> Vec<(u8, Bytes)> {
        self.buf.extend_from_slice(data);
        let mut pieces = Vec::new();
        loop {
            if self.buf.is_empty() {
                break;
            }
            let raw = *self.raw.get_or_insert_with(|| {
                !(self.buf[0] <= 2 && (self.buf.len() < 4 || self.buf[1..4] == [0, 0, 0]))
            });
            if raw {
                pieces.push((STDOUT, self.buf.split().freeze()));
                break;
            }
            if self.buf.len() < 8 {
                break;
            }
            let stream = self.buf[0];
            let len =
                u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if self.buf.len() < 8 + len {
                break;
            }
            self.buf.advance(8);
            let payload = self.buf.split_to(len).freeze();
            // stream 0 (stdin echoed back) is shown as stdout, as docker does
            pieces.push((if stream == STDERR { STDERR } else { STDOUT }, payload));
        }
        pieces
    }
}

fn write_pieces(pieces: Vec<(u8, Bytes)>) -> Result<()> {
    for (stream, bytes) in pieces {
        if stream == STDERR {
            err_out(&bytes)?;
        } else {
            out(&bytes)?;
        }
    }
    Ok(())
}

/// `exec`.
pub async fn exec(engine: &Engine, args: ExecArgs) -> Result<i32> {
    if args.tty {
        return Err(Error::NotSupported(
            "allocating a TTY (exec -t)".to_string(),
        ));
    }
    for e in &args.env {
        if e.split('=').next().unwrap_or_default().is_empty() {
            return Err(Error::Usage(format!("invalid environment variable: '{e}'")));
        }
    }
    let config = ExecConfig {
        attach_stdin: Some(args.interactive && !args.detach),
        attach_stdout: Some(!args.detach),
        attach_stderr: Some(!args.detach),
        tty: Some(false),
        env: (!args.env.is_empty()).then(|| args.env.clone()),
        cmd: Some(args.command.clone()),
        privileged: Some(args.privileged),
        user: args.user.clone(),
        working_dir: args.workdir.clone(),
        ..Default::default()
    };
    let created = engine
        .docker()
        .create_exec(&args.container, config)
        .await
        .map_err(|e| engine.err(e))?;

    if args.detach {
        let started = engine
            .docker()
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| engine.err(e))?;
        debug_assert!(matches!(started, StartExecResults::Detached));
        return Ok(0);
    }

    let path = format!("/exec/{}/start", encode(&created.id, false));
    let hijacked = engine
        .hijack(
            &path,
            Bytes::from_static(br#"{"Detach":false,"Tty":false}"#),
        )
        .await?;
    let mut demux = Demux::default();
    match hijacked {
        Hijacked::Upgraded(io) => {
            let (mut reader, mut writer) = tokio::io::split(io);
            let copier = args.interactive.then(|| {
                tokio::spawn(async move {
                    use futures_util::StreamExt;
                    let mut input = reader_stream(Box::new(std::io::stdin()));
                    while let Some(Ok(chunk)) = input.next().await {
                        if writer.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = writer.shutdown().await;
                })
            });
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = reader
                    .read(&mut buf)
                    .await
                    .map_err(|e| Error::Engine(format!("reading exec output: {e}")))?;
                if n == 0 {
                    break;
                }
                write_pieces(demux.push(&buf[..n]))?;
            }
            if let Some(copier) = copier {
                copier.abort();
            }
        }
        Hijacked::Body(mut body) => {
            while let Some(frame) = body.frame().await {
                let frame =
                    frame.map_err(|e| Error::Engine(format!("reading exec output: {e}")))?;
                if let Some(data) = frame.data_ref() {
                    write_pieces(demux.push(data))?;
                }
            }
        }
    }
    exit_code(engine, &created.id).await
}

/// The exec's exit code; the engine may take a moment to record it after the
/// output ends.
async fn exit_code(engine: &Engine, exec_id: &str) -> Result<i32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let inspect = engine
            .docker()
            .inspect_exec(exec_id)
            .await
            .map_err(|e| engine.err(e))?;
        if let (Some(code), false) = (inspect.exit_code, inspect.running.unwrap_or(false)) {
            return Ok(code.clamp(i32::MIN as i64, i32::MAX as i64) as i32);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Engine(format!(
                "the engine did not report the exit code of exec {exec_id}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn demux_splits_frames_across_reads() {
        let mut data = frame(1, b"hello\n");
        data.extend(frame(2, b"oops\n"));
        let mut d = Demux::default();
        let mut got = Vec::new();
        // feed in awkward pieces
        for chunk in data.chunks(5) {
            got.extend(d.push(chunk));
        }
        assert_eq!(
            got,
            vec![
                (STDOUT, Bytes::from_static(b"hello\n")),
                (STDERR, Bytes::from_static(b"oops\n"))
            ]
        );
    }

    #[test]
    fn demux_passes_raw_output_through() {
        let mut d = Demux::default();
        assert_eq!(
            d.push(b"plain text"),
            vec![(STDOUT, Bytes::from_static(b"plain text"))]
        );
        assert_eq!(
            d.push(b"\x01more"),
            vec![(STDOUT, Bytes::from_static(b"\x01more"))]
        );
    }
}

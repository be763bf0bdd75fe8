//! One function a command. Each returns the process exit code, or an error
//! that `main` prints.

pub mod container;
pub mod copy;
pub mod exec;
pub mod image;
pub mod system;

use std::io::{Read, Write};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use crate::cli::Command;
use crate::client::Engine;
use crate::error::{Error, Result};

/// Runs one command against the engine at `host`.
pub async fn dispatch(host: &str, command: Command) -> Result<i32> {
    // `version` prints the client part even when the engine is down.
    if let Command::Version = command {
        return system::version(host).await;
    }
    let engine = Engine::new(host)?;
    match command {
        Command::Version => unreachable!("handled above"),
        Command::Info => system::info(&engine).await,
        Command::Images(a) => image::images(&engine, a).await,
        Command::Load(a) => image::load(&engine, a).await,
        Command::Import(a) => image::import(&engine, a).await,
        Command::Pull(a) => image::pull(&engine, a).await,
        Command::Tag(a) => image::tag(&engine, a).await,
        Command::Rmi(a) => image::rmi(&engine, a).await,
        Command::Create(a) => container::create(&engine, a).await,
        Command::Run(a) => container::run(&engine, a).await,
        Command::Start(a) => container::start(&engine, a).await,
        Command::Stop(a) => container::stop(&engine, a, false).await,
        Command::Restart(a) => container::stop(&engine, a, true).await,
        Command::Kill(a) => container::kill(&engine, a).await,
        Command::Rm(a) => container::rm(&engine, a).await,
        Command::Ps(a) => container::ps(&engine, a).await,
        Command::Inspect(a) => container::inspect(&engine, a).await,
        Command::Logs(a) => container::logs(&engine, a).await,
        Command::Wait(a) => container::wait(&engine, a).await,
        Command::Exec(a) => exec::exec(&engine, a).await,
        Command::Cp(a) => copy::cp(&engine, a).await,
    }
}

/// Writes to stdout and flushes (output is often piped into other tools).
pub fn out(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|_| stdout.flush())
        .map_err(Error::Output)
}

/// Writes to stderr and flushes.
pub fn err_out(bytes: &[u8]) -> Result<()> {
    let mut stderr = std::io::stderr().lock();
    stderr
        .write_all(bytes)
        .and_then(|_| stderr.flush())
        .map_err(Error::Output)
}

/// Streams a blocking reader (a file, stdin) as chunks, read on its own
/// thread so that the async runtime never blocks on it.
pub fn reader_stream(
    mut reader: Box<dyn Read + Send>,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// Runs `op` on every name, printing the name on success and the error on
/// failure (docker's behaviour for start, stop, kill, rm...); exit code 1 if
/// any failed.
pub async fn for_each_name<F, Fut>(names: &[String], mut op: F) -> Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut code = 0;
    for name in names {
        match op(name.clone()).await {
            Ok(()) => out(format!("{name}\n").as_bytes())?,
            Err(e) => {
                if matches!(e, Error::CannotConnect { .. }) {
                    return Err(e);
                }
                err_out(format!("{e}\n").as_bytes())?;
                code = 1;
            }
        }
    }
    Ok(code)
}

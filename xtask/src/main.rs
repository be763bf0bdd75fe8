//! `cargo xtask`: OxOS's developer tasks.
//!
//! # Background
//!
//! OxOS is built and tested with plain Cargo plus a few host tools (Debian's
//! `docker.io` CLI as an API-compatibility client, `runc` as the benchmark
//! baseline, `docker-registry` and `skopeo` for pull tests). This binary is the
//! one entry point for everything that is more than `cargo build`, following the
//! [xtask](https://github.com/matklad/cargo-xtask) convention: it is a normal
//! workspace member run through the `cargo xtask` alias in `.cargo/config.toml`,
//! so it needs nothing but the Rust toolchain.
//!
//! # Design
//!
//! One module per task. Each external step runs as a child process whose output
//! is streamed as it comes; a failing step stops the task with an error that
//! names the step (see [`cmd`]).
//!
//! - [`test`]: installs the host packages the tests need, then builds and tests
//!   the whole workspace (`cargo xtask test`, the README's test command).
//! - [`os`]: the OS image build and QEMU boot (`cargo xtask build`, `run`, `boot`).
//! - [`images`]: system images from `images/<name>/` and the package lock
//!   (`cargo xtask images`, `cargo xtask lock`).
//! - [`bench`]: benchmarks that measure the targets of the design
//!   (`cargo xtask bench engine`).
//! - [`check`]: `fmt-check` and `lint`, the static checks `.ci/run` also runs.
//!
//! # Limitations
//!
//! The tasks assume a Debian host (apt-get, dpkg-query) and run the
//! integration tests and benchmarks as root, since those run real containers.

mod bench;
mod bench_boot;
mod check;
mod cleanup;
mod cmd;
mod images;
mod os;
mod test;
mod testimage;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "OxOS build, test and benchmark tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the host packages the tests need, build the workspace and run
    /// every test (unit and host integration).
    ///
    /// Example: `cargo xtask test`, or `cargo xtask test --unit --no-install`.
    Test(test::TestArgs),
    /// Build the OxOS image and boot it in QEMU (`build`, then `run`).
    ///
    /// Example: `cargo xtask boot`.
    Boot(os::BootArgs),
    /// Build kernel, initrd, system images, ISO and disk image into `dist/`.
    ///
    /// Example: `cargo xtask build`.
    Build(os::BuildArgs),
    /// Boot what `build` wrote to `dist/` in QEMU.
    ///
    /// Example: `cargo xtask run --disk --ssh-port 2222 --cloud-config user.yml`.
    Run(os::RunArgs),
    /// Build the system images declared under `images/` into OCI archives.
    ///
    /// Example: `cargo xtask images --only os-base`.
    Images(images::ImagesArgs),
    /// Refresh the package lock file from the Debian archive.
    ///
    /// Example: `cargo xtask lock`.
    Lock(images::LockArgs),
    /// Run a benchmark.
    ///
    /// Example: `cargo xtask bench engine --runs 100`, `cargo xtask bench boot`.
    Bench {
        #[command(subcommand)]
        bench: BenchKind,
    },
    /// Check formatting (`cargo fmt --all -- --check`).
    FmtCheck,
    /// Run clippy on every target with warnings denied.
    Lint,
}

#[derive(Subcommand)]
enum BenchKind {
    #[command(flatten)]
    Engine(bench::Bench),
    /// Boot time and memory of OxOS against Debian trixie with systemd and
    /// docker.io, both in QEMU with the same command.
    ///
    /// Example: `sudo cargo xtask bench boot --runs 3`.
    Boot(bench_boot::BootArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test(args) => test::run(&args),
        Task::Boot(args) => os::boot(&args),
        Task::Build(args) => os::build_cmd(&args),
        Task::Run(args) => os::run_cmd(&args),
        Task::Images(args) => images::run(&args),
        Task::Lock(args) => images::lock(&args),
        Task::Bench { bench } => match bench {
            BenchKind::Engine(bench) => bench::run(&bench),
            BenchKind::Boot(args) => bench_boot::run(&args),
        },
        Task::FmtCheck => check::fmt_check(),
        Task::Lint => check::lint(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

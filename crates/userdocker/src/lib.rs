//! User Docker's start: `ros docker-init` turns `rancher.docker` into
//! dockerd's command line and environment, then runs dockerd.

pub mod cli;

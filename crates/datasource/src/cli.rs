//! `ros cloud-init-save`: fetch user-data and metadata from the configured
//! datasources and save them where the config layers read them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::{fetch, parse_sources, save, FetchOptions, UserData};

const AFTER_HELP: &str = "\
The sources are rancher.cloud_init.datasources of the merged config (default
[configdrive:/media/config-2]); the first that answers wins. What it gives is
saved under /var/lib/rancher/conf: cloud-config.d/boot.yml (a cloud-config,
or #compose wrapped into rancher.services), cloud-config-script (a #! script),
metadata, and cloud-config.d/network.yml. See docs/datasources.md.

Examples:
  ros cloud-init-save --local-only --timeout 5     before the network
  ros cloud-init-save --network-only --timeout 60  at boot, once the network is up
  ros cloud-init-save -d url:http://10.0.0.1/user-data";

/// Fetch user-data and metadata and save them for the next config load.
#[derive(Debug, Parser)]
#[command(name = "ros cloud-init-save", bin_name = "ros cloud-init-save", after_help = AFTER_HELP)]
struct Cli {
    /// Directory that every system path is relative to
    #[arg(long, value_name = "DIR", default_value = "/", env = "ROS_ROOT")]
    root: PathBuf,
    /// Give up after this many seconds when no source answers
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
    /// Only the sources that need no network (cmdline, file, configdrive, nocloud)
    #[arg(long, conflicts_with = "network_only")]
    local_only: bool,
    /// Only the sources that need the network, and none when a local source
    /// answered at this boot (PID 1 asks those before any service)
    #[arg(long)]
    network_only: bool,
    /// Use these sources instead of the config's (repeatable)
    #[arg(short = 'd', long = "datasource", value_name = "SOURCE")]
    datasources: Vec<String>,
}

/// The entries of `rancher.cloud_init.datasources` in a merged config: a
/// list, or a single entry written as a string; none when unset (the
/// default list then applies, see [`crate::parse_sources`]).
pub fn configured(merged: &config::Config) -> Vec<String> {
    match merged.get("rancher.cloud_init.datasources") {
        Ok(Some(serde_norway::Value::Sequence(items))) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Ok(Some(serde_norway::Value::String(one))) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// `ros cloud-init-save ARGS...`; returns the exit code: 0 saved or nothing
/// to save, 1 failed, 2 bad usage.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    let cli: Cli = match service_cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match service_cli::runtime("ros cloud-init-save") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ros cloud-init-save: {e}");
            1
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let root = config::Root::new(&cli.root);
    let entries = if cli.datasources.is_empty() {
        configured(&config::load(&root).map_err(|e| e.to_string())?)
    } else {
        cli.datasources.clone()
    };
    let list = parse_sources(&entries);
    for problem in &list.problems {
        eprintln!("ros cloud-init-save: {problem}");
    }
    if cli.network_only {
        if let Some(source) = crate::saved_at_boot(&cli.root) {
            eprintln!(
                "ros cloud-init-save: {source} answered at this boot; the network datasources are not asked"
            );
            return Ok(());
        }
    }
    let sources: Vec<_> = list
        .sources
        .into_iter()
        .filter(|s| !cli.local_only || s.is_local())
        .filter(|s| !cli.network_only || !s.is_local())
        .collect();
    if sources.is_empty() {
        eprintln!("ros cloud-init-save: no datasource to ask");
        return Ok(());
    }
    let cmdline = std::fs::read_to_string(root.proc_cmdline()).unwrap_or_default();
    let options = FetchOptions::new(Duration::from_secs(cli.timeout)).with_cmdline(cmdline);
    let names: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    eprintln!("ros cloud-init-save: asking {}", names.join(", "));
    let fetched = match fetch(&sources, &options).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            eprintln!(
                "ros cloud-init-save: no datasource answered in {} s",
                cli.timeout
            );
            return Ok(());
        }
        Err(e) => return Err(e.to_string()),
    };
    save(&cli.root, &fetched).map_err(|e| e.to_string())?;
    let what = match &fetched.user_data {
        Some(UserData::CloudConfig(_)) => "a cloud-config",
        Some(UserData::Script(_)) => "a script",
        None => "no user-data",
    };
    eprintln!(
        "ros cloud-init-save: {} gave {what}{}; saved under {}",
        fetched.source,
        fetched
            .metadata
            .hostname
            .as_deref()
            .map(|h| format!(" and hostname {h}"))
            .unwrap_or_default(),
        root.join("/var/lib/rancher/conf").display()
    );
    Ok(())
}

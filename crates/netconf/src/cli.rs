//! `ros netconf`: the command line.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::dhcp::{self, Dhcpcd, HookConfig};
use crate::plan::{self, Dns, Settings};

const AFTER_HELP: &str = "\
What it does, in order:
  1. reads rancher.network from the merged config (ros config get rancher.network)
  2. creates the VLANs and bridges it names, brings links up (lo too), sets
     MTUs, static addresses and default routes
  3. writes resolv.conf from rancher.network.dns (static settings win over DHCP's)
  4. runs dhcpcd for the links with dhcp: true, restarting it if it exits;
     each lease is logged as \"eth0: 10.0.2.15/24 via dhcp (router ..., dns ...)\"

With nothing under rancher.network.interfaces, every Ethernet link gets DHCP.

Examples:
  ros config set rancher.network.interfaces.eth0.address 192.168.1.10/24
  ros config set rancher.network.interfaces.eth0.gateway 192.168.1.1
  ros config set rancher.network.dns.nameservers '[1.1.1.1]'
  ros netconf --dry-run        show what would be done
  ros netconf --once           apply, wait for the first lease, exit

Keys and what is not supported yet: docs/networking.md.";

#[derive(Debug, Parser)]
#[command(
    name = "ros netconf",
    bin_name = "ros netconf",
    about = "Configure the network from rancher.network: links, addresses, routes, DNS, DHCP (dhcpcd)",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Apply, wait for the first DHCP lease (or rancher.network.dhcp_timeout),
    /// then exit instead of running as the network service
    #[arg(long, visible_alias = "no-daemon")]
    once: bool,
    /// Print the plan (links, addresses, routes, DHCP) and change nothing
    #[arg(long)]
    dry_run: bool,
    /// The resolv.conf to write
    #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Where dhcpcd's options file, its hook and the leases' name servers go
    #[arg(long, value_name = "DIR", default_value = "/run/netconf")]
    state_dir: PathBuf,
    /// The root whose config is read (tests, unbooted images)
    #[arg(long, value_name = "DIR", env = "ROS_ROOT", default_value = "/")]
    root: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Handle one dhcpcd event (dhcpcd runs this through its hook script)
    #[command(hide = true)]
    DhcpHook {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        resolv_conf: PathBuf,
        #[arg(long)]
        nameserver: Vec<IpAddr>,
        #[arg(long)]
        search: Vec<String>,
    },
}

/// `ros netconf ARGS` (`args[0]` is `netconf`). Returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli: Cli = match service_cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    service_cli::init_logging();
    let result = match cli.command {
        Some(Command::DhcpHook {
            ref state_dir,
            ref resolv_conf,
            ref nameserver,
            ref search,
        }) => {
            let hook = HookConfig {
                state_dir: state_dir.clone(),
                resolv_conf: resolv_conf.clone(),
                dns: Dns {
                    nameservers: nameserver.clone(),
                    search: search.clone(),
                },
            };
            let env: BTreeMap<String, String> = std::env::vars().collect();
            dhcp::run_hook(&hook, &env).context("dhcp hook")
        }
        None => run(&cli),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ros netconf: {}", service_cli::error_chain(&e));
            1
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let root = config::Root::new(&cli.root);
    let cfg: config::model::CloudConfig = config::load(&root)
        .and_then(|c| c.typed())
        .context("failed to read the config")?;
    let settings = Settings::from_config(&cfg.rancher.network)?;
    if !cli.dry_run {
        // --dry-run prints them with the plan.
        for w in &settings.warnings {
            tracing::warn!("{w}");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(run_async(cli, settings))
}

async fn run_async(cli: &Cli, settings: Settings) -> anyhow::Result<()> {
    // Signals are set up first: a SIGTERM while links are configured still
    // stops the service once they are.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("failed to watch SIGINT")?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping");
    };

    let handle = crate::netlink::connect()?;
    let links = crate::netlink::links(&handle).await?;
    let creations = plan::creations(&settings.interfaces, &links);
    if cli.dry_run {
        print!(
            "{}",
            describe(&settings, &creations, &plan::plan(&settings, &links))
        );
        return Ok(());
    }
    let mut failed = crate::netlink::create(&handle, &creations).await;
    let links = if creations.is_empty() {
        links
    } else {
        crate::netlink::links(&handle).await?
    };
    let plan = plan::plan(&settings, &links);
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    failed.extend(crate::netlink::apply(&handle, &plan).await);
    for e in &failed {
        tracing::error!("{e}");
    }
    // --once reports a partial failure in its exit code; the service goes
    // on with what worked (DHCP on the other links, DNS).
    let partial = (cli.once && !failed.is_empty())
        .then(|| anyhow::anyhow!("{} link setting(s) failed (see above)", failed.len()));

    let hook = HookConfig {
        state_dir: cli.state_dir.clone(),
        resolv_conf: cli.resolv_conf.clone(),
        dns: settings.dns.clone(),
    };
    dhcp::update_resolv_conf(&hook)?;

    let dhcp_links = plan.dhcp_links();
    if dhcp_links.is_empty() {
        if let Some(e) = partial {
            return Err(e);
        }
        if cli.once {
            return Ok(());
        }
        tracing::info!("no link uses dhcp; configured, waiting for the service to stop");
        heap_trim::release_free_heap();
        shutdown.await;
        return Ok(());
    }
    let path = dhcp::find_dhcpcd().ok_or_else(|| crate::Error::NoDhcpcd(dhcp_links.join(", ")))?;
    let exe =
        std::env::current_exe().context("failed to find the running binary for dhcpcd's hook")?;
    let (conf, script) = dhcp::prepare(&exe, &hook)?;
    let dhcpcd = Dhcpcd {
        path,
        args: dhcp::dhcpcd_args(&conf, &script, cli.once, settings.dhcp_timeout, &dhcp_links),
    };
    if cli.once {
        dhcpcd.run_once(&dhcp_links, settings.dhcp_timeout).await?;
    } else {
        // The links are configured: what planning them freed goes back to
        // the kernel before this process waits on dhcpcd for good.
        heap_trim::release_free_heap();
        dhcpcd.supervise(shutdown).await?;
    }
    partial.map_or(Ok(()), Err)
}

/// `--dry-run`'s text.
fn describe(settings: &Settings, creations: &[plan::Create], plan: &plan::Plan) -> String {
    let mut out = String::new();
    for w in settings.warnings.iter().chain(&plan.warnings) {
        out.push_str(&format!("warning: {w}\n"));
    }
    for c in creations {
        match c {
            plan::Create::Vlan { name, id, .. } => {
                out.push_str(&format!("create vlan {name} (id {id})\n"))
            }
            plan::Create::Bridge { name } => out.push_str(&format!("create bridge {name}\n")),
        }
    }
    for l in &plan.links {
        let mut what = vec!["up".to_owned()];
        if let Some(mtu) = l.mtu {
            what.push(format!("mtu {mtu}"));
        }
        what.extend(l.addresses.iter().map(|a| format!("address {a}")));
        if let Some(gw) = l.gateway {
            what.push(format!("gateway {gw}"));
        }
        if let Some(gw) = l.gateway_ipv6 {
            what.push(format!("gateway_ipv6 {gw}"));
        }
        if l.controller.is_some() {
            what.push("bridge port".to_owned());
        }
        if l.dhcp {
            what.push("dhcp".to_owned());
        }
        let from = l
            .key
            .as_deref()
            .map(|k| format!(" [{k}]"))
            .unwrap_or_default();
        out.push_str(&format!("{}{from}: {}\n", l.name, what.join(", ")));
    }
    if let Some(text) = plan::resolv_conf(&settings.dns, &[]) {
        out.push_str(&format!("resolv.conf (before any lease):\n{text}"));
    }
    out
}

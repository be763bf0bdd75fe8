//! DHCP through dhcpcd.
//!
//! dhcpcd runs in the foreground (`-B`) as one manager (`-M`) for every DHCP
//! link, IPv4 only (`-4`, as RancherOS ran it), without udev (`--nodev`: the
//! container has none, and dhcpcd would otherwise wait for udev to announce
//! links), and persistent (`-p`: stopping or restarting the service keeps
//! the addresses, so the system does not drop off the network meanwhile).
//!
//! It reads its options from a file netconf writes (`-f`), not from the
//! image's /etc/dhcpcd.conf, and runs netconf itself as its hook script
//! (`-c`), instead of dhcpcd-run-hooks: the hook prints one readable line
//! per lease and keeps resolv.conf from the leases' name servers and the
//! static `rancher.network.dns`, so dhcpcd writes no file of its own apart
//! from its lease database (/var/lib/dhcpcd) and its control socket (/run).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::plan::{resolv_conf, Dns};

/// dhcpcd's options file.
///
/// `noarp` skips the ARP probe of an offered address (RFC 5227), as
/// RancherOS did (`dhcpcd -MA4`): the probe holds the lease back about 5 s
/// at every boot, and a DHCP server already hands out each address once.
/// `nodelay` skips dhcpcd's random wait before its first request.
pub const DHCPCD_CONF: &str = "# Written by ros netconf, which runs dhcpcd with -f this file.
# Send the host name, ask for what netconf uses, and ignore stray servers.
hostname
option domain_name_servers, domain_name, domain_search
option classless_static_routes, interface_mtu
require dhcp_server_identifier
# Take the lease at once: no ARP probe of the address, no random first wait.
noarp
nodelay
";

/// dhcpcd on PATH, else where the network image has it.
pub fn find_dhcpcd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("dhcpcd"))
        .chain([PathBuf::from("/usr/sbin/dhcpcd")])
        .find(|p| p.is_file())
}

/// The arguments of dhcpcd. `once`: exit after the first lease (`-1`) or
/// after `timeout` seconds; otherwise wait for leases forever (`-t 0`).
pub fn dhcpcd_args(
    conf: &Path,
    hook: &Path,
    once: bool,
    timeout: u64,
    interfaces: &[String],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-B", "-M", "-4", "-p", "--nodev", "-f"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push(conf.into());
    args.push("-c".into());
    args.push(hook.into());
    args.push("-t".into());
    args.push(
        if once {
            timeout.to_string()
        } else {
            "0".to_owned()
        }
        .into(),
    );
    if once {
        args.push("-1".into());
    }
    args.extend(interfaces.iter().map(OsString::from));
    args
}

/// Quotes a word for /bin/sh (single quotes; a quote inside becomes '\'').
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Where the hook keeps state, and how to write resolv.conf.
#[derive(Debug, Clone, PartialEq)]
pub struct HookConfig {
    pub state_dir: PathBuf,
    pub resolv_conf: PathBuf,
    pub dns: Dns,
}

/// The hook script dhcpcd runs: it calls `exe` back with the `dhcp-hook`
/// command. `exe` is the running binary; the multi-call `ros` needs the
/// `netconf` word first.
pub fn hook_script(exe: &Path, hook: &HookConfig) -> String {
    let mut words = vec![sh_quote(&exe.to_string_lossy())];
    if exe.file_name().is_none_or(|n| n != "netconf") {
        words.push("netconf".to_owned());
    }
    words.push("dhcp-hook".to_owned());
    words.push("--state-dir".to_owned());
    words.push(sh_quote(&hook.state_dir.to_string_lossy()));
    words.push("--resolv-conf".to_owned());
    words.push(sh_quote(&hook.resolv_conf.to_string_lossy()));
    for ns in &hook.dns.nameservers {
        words.push("--nameserver".to_owned());
        words.push(sh_quote(&ns.to_string()));
    }
    for s in &hook.dns.search {
        words.push("--search".to_owned());
        words.push(sh_quote(s));
    }
    format!(
        "#!/bin/sh\n# Written by ros netconf: dhcpcd runs this on each event; it hands the event to netconf.\nexec {}\n",
        words.join(" ")
    )
}

/// Writes dhcpcd.conf and the hook into the state directory; returns their
/// paths.
pub fn prepare(exe: &Path, hook: &HookConfig) -> Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &hook.state_dir;
    let err = |what, path: &Path| {
        let path = path.to_owned();
        move |source| Error::File { what, path, source }
    };
    std::fs::create_dir_all(dir.join("dns")).map_err(err("create", dir))?;
    let conf = dir.join("dhcpcd.conf");
    std::fs::write(&conf, DHCPCD_CONF).map_err(err("write", &conf))?;
    let script = dir.join("dhcpcd-hook");
    std::fs::write(&script, hook_script(exe, hook)).map_err(err("write", &script))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(err("make executable", &script))?;
    Ok((conf, script))
}

/// What a dhcpcd event means for netconf.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A lease was bound or renewed.
    Lease {
        interface: String,
        reason: String,
        address: String,
        routers: Vec<String>,
        dns: Dns,
    },
    /// A lease is gone (expired, refused, carrier lost, link removed).
    Lost { interface: String, reason: String },
    /// Nothing to do (PREINIT, CARRIER, ...).
    Other,
}

/// Reads dhcpcd's hook environment (`reason`, `interface`, `new_*`).
pub fn event(env: &BTreeMap<String, String>) -> Event {
    let get = |k: &str| env.get(k).map(String::as_str).unwrap_or("");
    let words = |k: &str| {
        get(k)
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let interface = get("interface").to_owned();
    let reason = get("reason").to_owned();
    match reason.as_str() {
        "BOUND" | "RENEW" | "REBIND" | "REBOOT" | "INFORM" => {
            let mut search = words("new_domain_search");
            if search.is_empty() {
                search = words("new_domain_name");
            }
            let address = match get("new_subnet_cidr") {
                "" => get("new_ip_address").to_owned(),
                cidr => format!("{}/{cidr}", get("new_ip_address")),
            };
            Event::Lease {
                interface,
                reason,
                address,
                routers: words("new_routers"),
                dns: Dns {
                    nameservers: words("new_domain_name_servers")
                        .iter()
                        .filter_map(|n| n.parse::<IpAddr>().ok())
                        .collect(),
                    search,
                },
            }
        }
        "EXPIRE" | "NAK" | "NOCARRIER" | "DEPARTED" | "RELEASE" => {
            Event::Lost { interface, reason }
        }
        _ => Event::Other,
    }
}

/// The line a user reads for a lease: `eth0: 10.0.2.15/24 via dhcp (router
/// 10.0.2.2, dns 10.0.2.3)`.
pub fn lease_line(interface: &str, address: &str, routers: &[String], dns: &Dns) -> String {
    let mut extra = Vec::new();
    if !routers.is_empty() {
        extra.push(format!("router {}", routers.join(" ")));
    }
    if !dns.nameservers.is_empty() {
        let ns: Vec<String> = dns.nameservers.iter().map(ToString::to_string).collect();
        extra.push(format!("dns {}", ns.join(" ")));
    }
    if extra.is_empty() {
        format!("{interface}: {address} via dhcp")
    } else {
        format!("{interface}: {address} via dhcp ({})", extra.join(", "))
    }
}

fn dns_to_text(dns: &Dns) -> String {
    let mut text = String::new();
    for ns in &dns.nameservers {
        text.push_str(&format!("nameserver {ns}\n"));
    }
    if !dns.search.is_empty() {
        text.push_str(&format!("search {}\n", dns.search.join(" ")));
    }
    text
}

fn dns_from_text(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns
                .nameservers
                .extend(words.filter_map(|w| w.parse::<IpAddr>().ok())),
            Some("search") => dns.search.extend(words.map(str::to_owned)),
            _ => {}
        }
    }
    dns
}

/// `ros netconf dhcp-hook`: handles one dhcpcd event. The name servers of
/// each link's lease are kept in `<state>/dns/<link>` and resolv.conf is
/// rebuilt from all of them and the static config.
pub fn run_hook(hook: &HookConfig, env: &BTreeMap<String, String>) -> Result<()> {
    let dir = hook.state_dir.join("dns");
    let file_err = |what, path: &Path| {
        let path = path.to_owned();
        move |source| Error::File { what, path, source }
    };
    match event(env) {
        Event::Lease {
            interface,
            reason,
            address,
            routers,
            dns,
        } => {
            let line = lease_line(&interface, &address, &routers, &dns);
            if reason == "RENEW" || reason == "REBIND" {
                tracing::debug!("{line} (renewed)");
            } else {
                tracing::info!("{line}");
            }
            std::fs::create_dir_all(&dir).map_err(file_err("create", &dir))?;
            let path = dir.join(safe_name(&interface));
            std::fs::write(&path, dns_to_text(&dns)).map_err(file_err("write", &path))?;
        }
        Event::Lost { interface, reason } => {
            let path = dir.join(safe_name(&interface));
            match std::fs::remove_file(&path) {
                // Only a lease that was there is lost (dhcpcd also says
                // NOCARRIER for a link coming up).
                Ok(()) => {
                    tracing::warn!("{interface}: dhcp lease lost ({})", reason.to_lowercase())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(file_err("remove", &path)(e)),
            }
        }
        Event::Other => return Ok(()),
    }
    update_resolv_conf(hook)
}

/// A link name as a file name (link names hold no `/`, but the environment
/// is dhcpcd's word, not ours).
fn safe_name(interface: &str) -> String {
    interface.replace(['/', '\0'], "_")
}

/// Rebuilds resolv.conf from the static config and the saved leases.
pub fn update_resolv_conf(hook: &HookConfig) -> Result<()> {
    let dir = hook.state_dir.join("dns");
    let mut leases = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if let Ok(text) = std::fs::read_to_string(&p) {
                leases.push(dns_from_text(&text));
            }
        }
    }
    if let Some(text) = resolv_conf(&hook.dns, &leases) {
        if crate::resolv::write(&hook.resolv_conf, &text)? {
            tracing::info!("wrote {}", hook.resolv_conf.display());
        }
    }
    Ok(())
}

/// How long dhcpcd waits before a restart: doubles from 1s up to a minute,
/// and starts again from 1s once dhcpcd has run for a minute.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    const MAX: Duration = Duration::from_secs(60);

    /// The wait after a run that lasted `ran`.
    pub fn after(&mut self, ran: Duration) -> Duration {
        if ran >= Self::MAX {
            self.next = Duration::from_secs(1);
        }
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }
}

/// One dhcpcd to run.
#[derive(Debug, Clone)]
pub struct Dhcpcd {
    pub path: PathBuf,
    pub args: Vec<OsString>,
}

impl Dhcpcd {
    fn spawn(&self) -> Result<tokio::process::Child> {
        tracing::info!(
            "starting {} {}",
            self.path.display(),
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        tokio::process::Command::new(&self.path)
            .args(&self.args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Spawn {
                path: self.path.clone(),
                source,
            })
    }

    /// `--once`: runs dhcpcd until it has a lease (exit 0) or gives up.
    pub async fn run_once(&self, interfaces: &[String], timeout: u64) -> Result<()> {
        let mut child = self.spawn()?;
        // dhcpcd enforces its -t itself; this only guards against a dhcpcd
        // that hangs.
        let limit = Duration::from_secs(timeout + 15);
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status.map_err(|source| Error::Spawn {
                path: self.path.clone(),
                source,
            })?,
            Err(_) => {
                stop(&mut child).await;
                return Err(Error::NoLease {
                    interfaces: interfaces.join(", "),
                    timeout,
                    status: "no exit, killed".to_owned(),
                });
            }
        };
        if status.success() {
            Ok(())
        } else {
            Err(Error::NoLease {
                interfaces: interfaces.join(", "),
                timeout,
                status: status.to_string(),
            })
        }
    }

    /// The service: runs dhcpcd, restarting it with [`Backoff`] whenever it
    /// exits, until `shutdown` completes; then stops it.
    pub async fn supervise(&self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::default();
        loop {
            let started = Instant::now();
            let mut child = match self.spawn() {
                Ok(child) => Some(child),
                Err(e) => {
                    tracing::error!("{e}");
                    None
                }
            };
            if let Some(c) = child.as_mut() {
                tokio::select! {
                    status = c.wait() => match status {
                        Ok(s) => tracing::warn!("dhcpcd exited ({s})"),
                        Err(e) => tracing::warn!("dhcpcd: failed to wait: {e}"),
                    },
                    () = &mut shutdown => {
                        stop(c).await;
                        return Ok(());
                    }
                }
            }
            let wait = backoff.after(started.elapsed());
            tracing::warn!("restarting dhcpcd in {}s", wait.as_secs());
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown => return Ok(()),
            }
        }
    }
}

/// Asks dhcpcd to stop (SIGTERM), and kills it if it has not within 5s.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dhcpcd_runs_in_the_foreground_with_our_files() {
        let args = dhcpcd_args(
            Path::new("/run/n/dhcpcd.conf"),
            Path::new("/run/n/hook"),
            false,
            30,
            &["eth0".into()],
        );
        assert_eq!(
            args,
            [
                "-B",
                "-M",
                "-4",
                "-p",
                "--nodev",
                "-f",
                "/run/n/dhcpcd.conf",
                "-c",
                "/run/n/hook",
                "-t",
                "0",
                "eth0"
            ]
            .map(OsString::from)
        );
        let once = dhcpcd_args(
            Path::new("c"),
            Path::new("h"),
            true,
            12,
            &["a".into(), "b".into()],
        );
        let once: Vec<_> = once
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(once[9..], ["-t", "12", "-1", "a", "b"]);
    }

    #[test]
    fn hook_script_calls_back_with_quoted_words() {
        let hook = HookConfig {
            state_dir: "/run/net conf".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            dns: Dns {
                nameservers: vec!["1.1.1.1".parse().unwrap()],
                search: vec!["it's".into()],
            },
        };
        let script = hook_script(Path::new("/usr/bin/ros"), &hook);
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.ends_with(
            "exec '/usr/bin/ros' netconf dhcp-hook --state-dir '/run/net conf' --resolv-conf '/etc/resolv.conf' --nameserver '1.1.1.1' --search 'it'\\''s'\n"
        ));
        let own = hook_script(Path::new("/x/netconf"), &hook);
        assert!(own.contains("exec '/x/netconf' dhcp-hook "));
    }

    #[test]
    fn bound_event_gives_a_readable_line_and_dns() {
        let e = event(&env(&[
            ("reason", "BOUND"),
            ("interface", "eth0"),
            ("new_ip_address", "10.0.2.15"),
            ("new_subnet_cidr", "24"),
            ("new_routers", "10.0.2.2"),
            ("new_domain_name_servers", "10.0.2.3 10.0.2.4"),
            ("new_domain_name", "example.test"),
        ]));
        let Event::Lease {
            interface,
            address,
            routers,
            dns,
            ..
        } = e
        else {
            panic!("not a lease: {e:?}")
        };
        assert_eq!(
            lease_line(&interface, &address, &routers, &dns),
            "eth0: 10.0.2.15/24 via dhcp (router 10.0.2.2, dns 10.0.2.3 10.0.2.4)"
        );
        assert_eq!(dns.search, ["example.test"]);
        assert_eq!(dns_from_text(&dns_to_text(&dns)), dns);
        assert_eq!(
            event(&env(&[("reason", "EXPIRE"), ("interface", "eth0")])),
            Event::Lost {
                interface: "eth0".into(),
                reason: "EXPIRE".into()
            }
        );
        assert_eq!(
            event(&env(&[("reason", "PREINIT"), ("interface", "eth0")])),
            Event::Other
        );
    }

    #[test]
    fn hook_keeps_resolv_conf_from_leases_until_they_are_lost() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 9.9.9.9\n").unwrap();
        let hook = HookConfig {
            state_dir: dir.path().join("state"),
            resolv_conf: resolv.clone(),
            dns: Dns::default(),
        };
        let bound = |iface: &str, ns: &str| {
            env(&[
                ("reason", "BOUND"),
                ("interface", iface),
                ("new_ip_address", "10.0.0.2"),
                ("new_domain_name_servers", ns),
            ])
        };
        run_hook(&hook, &bound("eth0", "10.0.0.53")).unwrap();
        run_hook(&hook, &bound("eth1", "10.1.0.53")).unwrap();
        let text = std::fs::read_to_string(&resolv).unwrap();
        assert!(
            text.ends_with("nameserver 10.0.0.53\nnameserver 10.1.0.53\n"),
            "{text}"
        );
        run_hook(&hook, &env(&[("reason", "EXPIRE"), ("interface", "eth0")])).unwrap();
        let text = std::fs::read_to_string(&resolv).unwrap();
        assert!(
            !text.contains("10.0.0.53") && text.contains("10.1.0.53"),
            "{text}"
        );
        // Static name servers win over the lease's.
        let fixed = HookConfig {
            dns: Dns {
                nameservers: vec!["1.1.1.1".parse().unwrap()],
                search: vec![],
            },
            ..hook
        };
        run_hook(&fixed, &bound("eth1", "10.1.0.53")).unwrap();
        let text = std::fs::read_to_string(&resolv).unwrap();
        assert!(
            text.ends_with("nameserver 1.1.1.1\n") && !text.contains("10.1.0.53"),
            "{text}"
        );
    }

    fn fake_dhcpcd(script: String) -> Dhcpcd {
        Dhcpcd {
            path: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn an_exiting_dhcpcd_is_restarted_after_1s_then_2s() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let fake = fake_dhcpcd(format!("echo run >> '{}'; exit 1", runs.display()));
        let started = Instant::now();
        block_on(async {
            fake.supervise(tokio::time::sleep(Duration::from_millis(5000)))
                .await
        })
        .unwrap();
        // Runs at 0s, 1s and 3s; the next would be at 7s.
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 3);
        assert!(started.elapsed() < Duration::from_secs(7));
    }

    #[test]
    fn shutdown_stops_a_running_dhcpcd() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        // SIGTERM ends the script through its trap, as it ends dhcpcd.
        let fake = fake_dhcpcd(format!(
            "trap 'echo term > {}; exit 0' TERM; while :; do sleep 0.1; done",
            done.display()
        ));
        let started = Instant::now();
        block_on(async {
            fake.supervise(tokio::time::sleep(Duration::from_millis(300)))
                .await
        })
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(std::fs::read_to_string(&done).unwrap(), "term\n");
    }

    #[test]
    fn once_reports_a_dhcpcd_that_got_no_lease() {
        let fake = fake_dhcpcd("exit 1".into());
        let err = block_on(fake.run_once(&["eth0".into(), "eth1".into()], 7)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no dhcp lease on eth0, eth1 within 7s (dhcpcd exited with exit status: 1)"
        );
        block_on(fake_dhcpcd("exit 0".into()).run_once(&["eth0".into()], 7)).unwrap();
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let short = Duration::from_secs(1);
        let waits: Vec<u64> = (0..8).map(|_| b.after(short).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.after(Duration::from_secs(120)).as_secs(), 1);
    }
}

//! `ros netconf` against real links, each test in network namespaces of its
//! own (`ip netns`), so the host's interfaces are never touched. They need
//! root and iproute2; the DHCP test also needs dhcpcd and busybox (udhcpd
//! as the server). Each one that cannot run says why and passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const NETCONF: &str = env!("CARGO_BIN_EXE_netconf");

fn skip_reason(tools: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces)".into());
    }
    for tool in tools {
        if which(tool).is_none() {
            return Some(format!("needs {tool}"));
        }
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    if tool.starts_with('/') {
        return Path::new(tool).is_file().then(|| PathBuf::from(tool));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

macro_rules! skip_unless {
    ($($tool:expr),*) => {
        if let Some(why) = skip_reason(&[$($tool),*]) {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) -> Output {
    run(Command::new("ip").args(args))
}

fn ip_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    serde_json::from_slice(&ip(&all).stdout).expect("ip -j output")
}

/// A network namespace removed (with its links) on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "nc{tag}{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        Netns(name)
    }

    fn ip(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", &self.0];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-n", &self.0];
        all.extend_from_slice(args);
        ip_json(&all)
    }

    /// A command run inside the namespace.
    fn exec(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0, program]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A root directory whose cloud-config.yml is `yaml`.
fn root_with(yaml: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("var/lib/rancher/conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("cloud-config.yml"), yaml).unwrap();
    root
}

/// The `local/prefixlen` addresses of a link.
fn addresses(ns: &Netns, link: &str) -> Vec<String> {
    let v = ns.json(&["addr", "show", "dev", link]);
    v[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn is_up(ns: &Netns, link: &str) -> bool {
    let v = ns.json(&["link", "show", "dev", link]);
    v[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

const STATIC: &str = "rancher:
  network:
    dns:
      nameservers: [10.88.0.53]
      search: [example.test]
    interfaces:
      vt0:
        address: 10.88.0.2/24
        addresses: ['fd88::2/64']
        gateway: 10.88.0.1
        mtu: 1400
";

#[test]
fn static_address_gateway_mtu_and_dns_are_applied() {
    skip_unless!("ip");
    let ns = Netns::new("s");
    ns.ip(&["link", "add", "vt0", "type", "veth", "peer", "name", "vt1"]);
    ns.ip(&["link", "set", "vt1", "up"]);
    let root = root_with(STATIC);
    let resolv = root.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 1.1.1.1\n").unwrap();
    let netconf = |ns: &Netns| {
        ns.exec(NETCONF)
            .arg("--once")
            .arg("--root")
            .arg(root.path())
            .arg("--resolv-conf")
            .arg(&resolv)
            .arg("--state-dir")
            .arg(root.path().join("state"))
            .output()
            .unwrap()
    };
    for round in 0..2 {
        // The second round finds everything in place and changes nothing.
        let out = netconf(&ns);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "round {round}: {stderr}");
        assert!(stderr.contains("vt0: 10.88.0.2/24 (static)"), "{stderr}");
        let addrs = addresses(&ns, "vt0");
        assert!(addrs.contains(&"10.88.0.2/24".to_owned()), "{addrs:?}");
        assert!(addrs.contains(&"fd88::2/64".to_owned()), "{addrs:?}");
        assert_eq!(addrs.iter().filter(|a| *a == "10.88.0.2/24").count(), 1);
        let link = ns.json(&["link", "show", "dev", "vt0"]);
        assert_eq!(link[0]["mtu"], 1400);
        assert!(is_up(&ns, "vt0") && is_up(&ns, "lo"));
        let routes = ns.json(&["route", "show", "default"]);
        assert_eq!(routes[0]["gateway"], "10.88.0.1", "{routes}");
        assert_eq!(routes[0]["dev"], "vt0");
        assert_eq!(
            std::fs::read_to_string(&resolv).unwrap(),
            "# Written by ros netconf from rancher.network.dns and DHCP\nsearch example.test\nnameserver 10.88.0.53\n"
        );
    }
    // The link nothing configures is left alone.
    assert!(addresses(&ns, "vt1").iter().all(|a| a.starts_with("fe80")));
}

#[test]
fn vlans_and_bridges_are_created_and_configured() {
    skip_unless!("ip");
    let ns = Netns::new("v");
    ns.ip(&["link", "add", "vt0", "type", "veth", "peer", "name", "vt1"]);
    // Not every kernel has 802.1Q (this one may be built without it).
    let vlans = Command::new("ip")
        .args([
            "-n", &ns.0, "link", "add", "link", "vt0", "name", "probe", "type", "vlan", "id", "99",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    let config = if vlans {
        ns.ip(&["link", "del", "probe"]);
        "rancher:\n  network:\n    interfaces:\n      vt0: {vlans: '10,20:guests'}\n      vt0.10: {address: 10.10.0.2/24}\n      vt1: {bridge: br0}\n      br0: {bridge: true, address: 10.20.0.1/24}\n"
    } else {
        eprintln!("vlans skipped: the kernel has no 802.1Q support");
        "rancher:\n  network:\n    interfaces:\n      vt1: {bridge: br0}\n      br0: {bridge: true, address: 10.20.0.1/24}\n"
    };
    let root = root_with(config);
    for round in 0..2 {
        let out = ns
            .exec(NETCONF)
            .arg("--once")
            .arg("--root")
            .arg(root.path())
            .arg("--resolv-conf")
            .arg(root.path().join("resolv.conf"))
            .arg("--state-dir")
            .arg(root.path().join("state"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "round {round}: {stderr}");
        let vlan = |name: &str| {
            let v = ns.json(&["-d", "link", "show", "dev", name]);
            assert_eq!(v[0]["linkinfo"]["info_kind"], "vlan", "{v}");
            v[0]["linkinfo"]["info_data"]["id"].as_u64().unwrap()
        };
        if vlans {
            assert_eq!(vlan("vt0.10"), 10);
            assert_eq!(vlan("guests"), 20);
            assert_eq!(addresses(&ns, "vt0.10")[0], "10.10.0.2/24");
            assert!(is_up(&ns, "guests"));
        }
        let br = ns.json(&["-d", "link", "show", "dev", "br0"]);
        assert_eq!(br[0]["linkinfo"]["info_kind"], "bridge", "{br}");
        assert!(addresses(&ns, "br0").contains(&"10.20.0.1/24".to_owned()));
        let port = ns.json(&["link", "show", "dev", "vt1"]);
        assert_eq!(port[0]["master"], "br0", "{port}");
        assert!(is_up(&ns, "vt1") && is_up(&ns, "br0"));
    }
    // Nothing was stacked on the second run.
    let all = ns.json(&["link", "show"]);
    let expected = if vlans { 6 } else { 4 };
    assert_eq!(all.as_array().unwrap().len(), expected, "{all}");
}

#[test]
fn a_link_that_fails_does_not_keep_the_others_down() {
    skip_unless!("ip");
    let ns = Netns::new("f");
    ns.ip(&["link", "add", "vt0", "type", "veth", "peer", "name", "vt1"]);
    // A gateway outside every subnet of its link: the kernel refuses the
    // route, the other link is configured all the same.
    let root = root_with(
        "rancher:\n  network:\n    interfaces:\n      vt0: {gateway: 10.99.0.1}\n      vt1: {address: 10.55.0.2/24}\n",
    );
    let out = ns
        .exec(NETCONF)
        .arg("--once")
        .arg("--root")
        .arg(root.path())
        .arg("--resolv-conf")
        .arg(root.path().join("resolv.conf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed to add default route via 10.99.0.1 on vt0: Network is unreachable"),
        "{stderr}"
    );
    assert!(
        stderr.contains("link setting(s) failed (see above)"),
        "{stderr}"
    );
    assert!(
        addresses(&ns, "vt1").contains(&"10.55.0.2/24".to_owned()),
        "{stderr}"
    );
}

#[test]
fn a_broken_config_stops_before_touching_anything_and_names_the_key() {
    let root = root_with("rancher:\n  network:\n    interfaces:\n      eth0: {address: 10.0.0.2, gateway: 10.0.0.1}\n");
    let out = Command::new(NETCONF)
        .arg("--once")
        .arg("--root")
        .arg(root.path())
        .arg("--resolv-conf")
        .arg(root.path().join("resolv.conf"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "ros netconf: rancher.network.interfaces.eth0.address: \"10.0.0.2\" is not an address with a prefix length, such as 192.168.1.10/24"
    );
    assert!(!root.path().join("resolv.conf").exists());
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    skip_unless!("ip");
    let ns = Netns::new("d");
    ns.ip(&["link", "add", "vt0", "type", "veth", "peer", "name", "vt1"]);
    let root = root_with(
        "rancher:\n  network:\n    interfaces:\n      vt0: {address: 10.9.0.2/24, vlans: '10'}\n      vt1: {dhcp: true, bond: bond0}\n",
    );
    let out = ns
        .exec(NETCONF)
        .arg("--dry-run")
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Links come in index order, which depends on the kernel: compare sorted.
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "create vlan vt0.10 (id 10)",
            "lo: up",
            "vt0 [vt0]: up, address 10.9.0.2/24",
            "vt1 [vt1]: up, dhcp",
            "warning: rancher.network.interfaces.vt1.bond: not supported yet, ignored",
        ]
    );
    assert!(!is_up(&ns, "vt0"));
    assert!(addresses(&ns, "vt0").is_empty());
}

/// Kills (by pid) a process this test started.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A DHCP server (busybox udhcpd on `10.<net>.0.1`, handing out
/// `10.<net>.0.100-150`, router .1, DNS .53, domain example.test) in one
/// namespace, and a client namespace whose link `vc` is cabled to it.
struct DhcpLab {
    _udhcpd: Killed,
    client: Netns,
    _server: Netns,
    dir: tempfile::TempDir,
    root: tempfile::TempDir,
    /// The container's /etc/resolv.conf is a file bind-mounted from the
    /// host: here `resolv` has `host_resolv` bind-mounted over it.
    host_resolv: PathBuf,
    resolv: PathBuf,
}

impl DhcpLab {
    fn new(net: u8) -> Self {
        let server = Netns::new("srv");
        let client = Netns::new("cli");
        ip(&[
            "link", "add", "vc", "netns", &client.0, "type", "veth", "peer", "name", "vs", "netns",
            &server.0,
        ]);
        server.ip(&["addr", "add", &format!("10.{net}.0.1/24"), "dev", "vs"]);
        server.ip(&["link", "set", "vs", "up"]);
        server.ip(&["link", "set", "lo", "up"]);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let udhcpd_conf = dir.path().join("udhcpd.conf");
        std::fs::write(
            &udhcpd_conf,
            format!(
                "start 10.{net}.0.100\nend 10.{net}.0.150\ninterface vs\npidfile {d}/udhcpd.pid\n\
                 lease_file {d}/udhcpd.leases\noption subnet 255.255.255.0\noption router 10.{net}.0.1\n\
                 option dns 10.{net}.0.53\noption domain example.test\noption lease 3600\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("udhcpd.leases"), "").unwrap();
        let udhcpd = Killed(
            server
                .exec("/bin/busybox")
                .arg("udhcpd")
                .arg("-f")
                .arg(&udhcpd_conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let host_resolv = dir.path().join("host-resolv.conf");
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&host_resolv, "nameserver 1.1.1.1\n").unwrap();
        std::fs::write(&resolv, "").unwrap();
        let root = root_with(
            "rancher:\n  network:\n    dhcp_timeout: 30\n    interfaces:\n      vc: {dhcp: true}\n",
        );
        DhcpLab {
            _udhcpd: udhcpd,
            client,
            _server: server,
            dir,
            root,
            host_resolv,
            resolv,
        }
    }

    /// netconf with `args` in the client namespace. dhcpcd keeps its lease
    /// database and control socket under /var/lib/dhcpcd and /run: a
    /// private mount namespace gives it empty ones, so the host's are left
    /// alone. `unshare` and `sh` exec, so the child's pid is netconf's.
    fn netconf(&self, args: &str) -> Command {
        let script = format!(
            "set -e; mount --make-rprivate /; mount -t tmpfs netconf-test /run; \
             mount -t tmpfs netconf-test /var/lib/dhcpcd; mount --bind '{}' '{}'; \
             exec '{NETCONF}' {args} --root '{}' --resolv-conf '{}' --state-dir '{}/state'",
            self.host_resolv.display(),
            self.resolv.display(),
            self.root.path().display(),
            self.resolv.display(),
            self.dir.path().display(),
        );
        let mut cmd = self.client.exec("unshare");
        cmd.args(["-m", "sh", "-c", &script]);
        cmd
    }

    /// The leased `10.<net>.0.x/24` on vc, if any.
    fn lease(&self, net: u8) -> Option<String> {
        addresses(&self.client, "vc")
            .into_iter()
            .find(|a| a.starts_with(&format!("10.{net}.0.")) && a.ends_with("/24"))
    }
}

#[test]
fn dhcp_lease_is_applied_logged_and_its_nameserver_written_through_a_bind_mount() {
    skip_unless!("ip", "unshare", "/bin/busybox", "dhcpcd");
    let lab = DhcpLab::new(77);
    let started = Instant::now();
    let out = lab.netconf("--once").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(45));

    let leased = lab
        .lease(77)
        .unwrap_or_else(|| panic!("no lease on vc\n{stderr}"));
    assert!(
        stderr.contains(&format!(
            "vc: {leased} via dhcp (router 10.77.0.1, dns 10.77.0.53)"
        )),
        "{stderr}"
    );
    let routes = lab.client.json(&["route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "10.77.0.1", "{routes}");
    // Written in place through the bind mount: the host's file has it.
    assert_eq!(
        std::fs::read_to_string(&lab.host_resolv).unwrap(),
        "# Written by ros netconf from rancher.network.dns and DHCP\nsearch example.test\nnameserver 10.77.0.53\n"
    );
}

/// The children of `pid` named `comm`, from /proc.
fn children(pid: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let name = head.split_once(" (").map(|(_, n)| n).unwrap_or("");
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        if name == comm && ppid == Some(pid) {
            out.extend(
                entry
                    .file_name()
                    .to_str()
                    .and_then(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

#[test]
fn the_dhcp_service_keeps_dhcpcd_running_and_stops_it_on_sigterm() {
    skip_unless!("ip", "unshare", "/bin/busybox", "dhcpcd");
    let lab = DhcpLab::new(78);
    let mut child = Killed(lab.netconf("").stderr(Stdio::null()).spawn().unwrap());
    let netconf = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(40);
    while !std::fs::read_to_string(&lab.host_resolv)
        .unwrap()
        .contains("nameserver 10.78.0.53")
    {
        assert!(Instant::now() < deadline, "no lease within 40s");
        assert!(child.0.try_wait().unwrap().is_none(), "netconf exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    let leased = lab.lease(78).expect("lease on vc");
    let dhcpcd = children(netconf, "dhcpcd");
    assert_eq!(dhcpcd.len(), 1, "dhcpcd under netconf: {dhcpcd:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.0.try_wait().unwrap().is_none(), "the service ended");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(netconf as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "netconf did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(
        !Path::new(&format!("/proc/{}", dhcpcd[0])).exists(),
        "dhcpcd outlived the service"
    );
    // Persistent: stopping the service keeps the address.
    assert_eq!(lab.lease(78).as_deref(), Some(leased.as_str()));
}

#[test]
fn the_service_stops_on_sigterm() {
    skip_unless!("ip");
    let ns = Netns::new("t");
    ns.ip(&["link", "add", "vt0", "type", "veth", "peer", "name", "vt1"]);
    let root =
        root_with("rancher:\n  network:\n    interfaces:\n      vt0: {address: 10.66.0.2/24}\n");
    let mut child = ns
        .exec(NETCONF)
        .arg("--root")
        .arg(root.path())
        .arg("--resolv-conf")
        .arg(root.path().join("resolv.conf"))
        .arg("--state-dir")
        .arg(root.path().join("state"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !addresses(&ns, "vt0").contains(&"10.66.0.2/24".to_owned()) {
        assert!(Instant::now() < deadline, "address never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still running as a service.
    assert!(child.try_wait().unwrap().is_none());
    // `ip netns exec` execs the program, so the pid is netconf's.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "netconf did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

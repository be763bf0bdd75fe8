//! From `rancher.network` to what to do on each link: pure functions, no
//! system calls, so every rule here is unit-tested.
//!
//! [`Settings::from_config`] checks the whole section once, before anything
//! is touched; [`plan`] then matches the links the kernel has against it.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use config::model::{InterfaceConfig, NetworkConfig};
use config::Value;
use ipnet::IpNet;

use crate::error::{invalid, Result};

/// What `ros netconf` waits for a first lease with `--once` when
/// `rancher.network.dhcp_timeout` is unset (seconds).
pub const DEFAULT_DHCP_TIMEOUT: u64 = 30;

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Lowercase `aa:bb:cc:dd:ee:ff`; `None` for links without one.
    pub mac: Option<String>,
    pub kind: LinkKind,
    /// The bridge or bond this link is a port of.
    pub controller: Option<u32>,
}

/// The sort of link, which decides what the default config does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    Loopback,
    /// An Ethernet device of hardware (or a virtual machine's NIC): Ethernet
    /// framing and no software link kind.
    Ethernet,
    /// A software link (`veth`, `bridge`, `vlan`, ...) or another framing.
    Other(String),
}

/// How an entry of `rancher.network.interfaces` picks its links.
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    /// `mac=52:54:00:12:34:56`, lowercase.
    Mac(String),
    /// A name without glob characters.
    Name(String),
    /// `eth*`, `en?s[0-9]`.
    Glob(glob::Pattern),
    /// The default when nothing is configured: every Ethernet link.
    Ethernet,
}

/// What to do with the links a [`Matcher`] picks.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum BridgeRole {
    #[default]
    None,
    /// `bridge: true`: this entry names a bridge to create.
    Create,
    /// `bridge: br0`: the link is a port of br0 (created if missing).
    PortOf(String),
}

/// One VLAN of `vlans: "100,200:name"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    pub id: u16,
    /// The link to create; `<parent>.<id>` when the entry gives none.
    pub name: Option<String>,
}

impl Vlan {
    /// The name of the VLAN link on `parent`.
    pub fn link_name(&self, parent: &str) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{parent}.{}", self.id))
    }
}

/// One checked entry of `rancher.network.interfaces`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// The key under `interfaces` (for messages).
    pub key: String,
    pub matcher: Matcher,
    pub dhcp: bool,
    pub addresses: Vec<IpNet>,
    pub gateway: Option<Ipv4Addr>,
    pub gateway_ipv6: Option<Ipv6Addr>,
    pub mtu: Option<u32>,
    pub bridge: BridgeRole,
    pub vlans: Vec<Vlan>,
}

/// `rancher.network.dns`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dns {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

/// `rancher.network`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub interfaces: Vec<Interface>,
    pub dns: Dns,
    pub dhcp_timeout: u64,
    /// Keys that are accepted but not acted on, as messages to print.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Checks `rancher.network`. An empty `interfaces` means DHCP on every
    /// Ethernet link (RancherOS's `eth*: {dhcp: true}`, matched by link type
    /// because NICs are not always named eth*).
    pub fn from_config(net: &NetworkConfig) -> Result<Self> {
        let mut warnings = Vec::new();
        let mut interfaces = Vec::new();
        for (key, cfg) in &net.interfaces {
            interfaces.push(interface(key, cfg, &mut warnings)?);
        }
        if interfaces.is_empty() {
            interfaces.push(Interface {
                key: "(default: every ethernet link)".to_owned(),
                matcher: Matcher::Ethernet,
                dhcp: true,
                addresses: Vec::new(),
                gateway: None,
                gateway_ipv6: None,
                mtu: None,
                bridge: BridgeRole::None,
                vlans: Vec::new(),
            });
        }
        let mut nameservers = Vec::new();
        for (i, ns) in net.dns.nameservers.iter().enumerate() {
            nameservers.push(ns.trim().parse().map_err(|_| {
                invalid(
                    format_args!("dns.nameservers[{i}]"),
                    format!("{ns:?} is not an IP address"),
                )
            })?);
        }
        for (i, s) in net.dns.search.iter().enumerate() {
            if s.is_empty() || s.chars().any(char::is_whitespace) {
                return Err(invalid(
                    format_args!("dns.search[{i}]"),
                    format!("{s:?} is not a domain name"),
                ));
            }
        }
        // The proxy keys are User Docker's (ros docker-init), not links'.
        for (name, set) in [
            ("pre_cmds", !net.pre_cmds.is_empty()),
            ("post_cmds", !net.post_cmds.is_empty()),
        ] {
            if set {
                warnings.push(not_yet(name));
            }
        }
        Ok(Self {
            interfaces,
            dns: Dns {
                nameservers,
                search: net.dns.search.clone(),
            },
            dhcp_timeout: net.dhcp_timeout.unwrap_or(DEFAULT_DHCP_TIMEOUT),
            warnings,
        })
    }
}

fn not_yet(key: &str) -> String {
    format!("rancher.network.{key}: not supported yet, ignored")
}

fn interface(key: &str, cfg: &InterfaceConfig, warnings: &mut Vec<String>) -> Result<Interface> {
    let k = |field: &str| format!("interfaces.{key}.{field}");
    let pattern = cfg.match_.as_deref().unwrap_or(key);
    let matcher = matcher(pattern).map_err(|reason| {
        let field = if cfg.match_.is_some() {
            k("match")
        } else {
            format!("interfaces.{key}")
        };
        invalid(field, reason)
    })?;
    let mut addresses = Vec::new();
    let listed = cfg
        .addresses
        .iter()
        .enumerate()
        .map(|(i, a)| (k(&format!("addresses[{i}]")), a));
    for (field, text) in cfg.address.iter().map(|a| (k("address"), a)).chain(listed) {
        let net: IpNet = text.trim().parse().map_err(|_| {
            invalid(
                &field,
                format!("{text:?} is not an address with a prefix length, such as 192.168.1.10/24"),
            )
        })?;
        if !addresses.contains(&net) {
            addresses.push(net);
        }
    }
    let gateway = match &cfg.gateway {
        None => None,
        Some(g) => Some(g.trim().parse::<Ipv4Addr>().map_err(|_| {
            invalid(
                k("gateway"),
                format!("{g:?} is not an IPv4 address (IPv6 goes in gateway_ipv6)"),
            )
        })?),
    };
    let gateway_ipv6 =
        match &cfg.gateway_ipv6 {
            None => None,
            Some(g) => Some(g.trim().parse::<Ipv6Addr>().map_err(|_| {
                invalid(k("gateway_ipv6"), format!("{g:?} is not an IPv6 address"))
            })?),
        };
    if let Some(mtu) = cfg.mtu {
        if !(68..=65535).contains(&mtu) {
            return Err(invalid(
                k("mtu"),
                format!("{mtu} is out of range: expected 68 to 65535"),
            ));
        }
    }
    let bridge = match &cfg.bridge {
        None | Some(Value::Null) | Some(Value::Bool(false)) => BridgeRole::None,
        Some(Value::Bool(true)) => match &matcher {
            Matcher::Name(_) => BridgeRole::Create,
            _ => return Err(invalid(
                k("bridge"),
                "bridge: true needs an interface key that is a plain name (the bridge to create)",
            )),
        },
        Some(Value::String(s)) if s == "true" => BridgeRole::Create,
        Some(Value::String(s)) if !s.trim().is_empty() => {
            check_link_name(s.trim()).map_err(|r| invalid(k("bridge"), r))?;
            BridgeRole::PortOf(s.trim().to_owned())
        }
        Some(other) => {
            return Err(invalid(
                k("bridge"),
                format!(
                    "expected true or the name of a bridge, found {}",
                    config::kind(other)
                ),
            ))
        }
    };
    let vlans = match &cfg.vlans {
        None => Vec::new(),
        Some(text) => parse_vlans(text).map_err(|r| invalid(k("vlans"), r))?,
    };
    if !vlans.is_empty()
        && !matches!(
            matcher,
            Matcher::Name(_) | Matcher::Mac(_) | Matcher::Glob(_)
        )
    {
        return Err(invalid(k("vlans"), "vlans need a named parent link"));
    }
    for (field, set) in [
        ("bond", cfg.bond.is_some()),
        ("bond_opts", !cfg.bond_opts.is_empty()),
        ("dhcp_args", cfg.dhcp_args.is_some()),
        ("ipv4ll", cfg.ipv4ll == Some(true)),
        ("pre_up", !cfg.pre_up.is_empty()),
        ("post_up", !cfg.post_up.is_empty()),
    ] {
        if set {
            warnings.push(not_yet(&k(field)));
        }
    }
    Ok(Interface {
        key: key.to_owned(),
        matcher,
        dhcp: cfg.dhcp.unwrap_or(false),
        addresses,
        gateway,
        gateway_ipv6,
        mtu: cfg.mtu,
        bridge,
        vlans,
    })
}

/// A link name the kernel accepts: 1 to 15 bytes, no `/`, no whitespace.
fn check_link_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 15
        || name.contains('/')
        || name.chars().any(char::is_whitespace)
    {
        return Err(format!(
            "{name:?} is not a valid link name (1 to 15 characters, no '/' or spaces)"
        ));
    }
    Ok(())
}

/// `mac=...` (any case, `-` or `:`), a glob, or a plain name.
pub fn matcher(pattern: &str) -> Result<Matcher, String> {
    let pattern = pattern.trim();
    if let Some(mac) = pattern
        .strip_prefix("mac=")
        .or_else(|| pattern.strip_prefix("MAC="))
    {
        let mac = mac.to_ascii_lowercase().replace('-', ":");
        let parts: Vec<&str> = mac.split(':').collect();
        let ok = parts.len() == 6
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            return Err(format!("{pattern:?}: expected mac=aa:bb:cc:dd:ee:ff"));
        }
        return Ok(Matcher::Mac(mac));
    }
    if pattern.contains(['*', '?', '[']) {
        return glob::Pattern::new(pattern)
            .map(Matcher::Glob)
            .map_err(|e| format!("{pattern:?} is not a valid glob: {e}"));
    }
    check_link_name(pattern)?;
    Ok(Matcher::Name(pattern.to_owned()))
}

/// `"100,200:guests"`: VLAN ids 1 to 4094, each with an optional link name.
pub fn parse_vlans(text: &str) -> Result<Vec<Vlan>, String> {
    let mut vlans = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, name) = match item.split_once(':') {
            Some((id, name)) => (id.trim(), Some(name.trim().to_owned())),
            None => (item, None),
        };
        let id: u16 = id
            .parse()
            .ok()
            .filter(|id| (1..=4094).contains(id))
            .ok_or_else(|| {
                format!("{item:?}: expected a VLAN id from 1 to 4094, optionally followed by :name")
            })?;
        if let Some(name) = &name {
            check_link_name(name)?;
        }
        vlans.push(Vlan { id, name });
    }
    Ok(vlans)
}

/// Which entry applies to a link: a MAC match first, then an exact name, then
/// the longest matching glob (RancherOS's order; among globs it picked
/// whichever its map gave first, OxOS the most specific).
pub fn find<'a>(interfaces: &'a [Interface], link: &Link) -> Option<&'a Interface> {
    let by_mac = interfaces.iter().find(|i| match (&i.matcher, &link.mac) {
        (Matcher::Mac(m), Some(mac)) => m == mac,
        _ => false,
    });
    let by_name = || {
        interfaces
            .iter()
            .find(|i| matches!(&i.matcher, Matcher::Name(n) if *n == link.name))
    };
    let by_glob = || {
        interfaces
            .iter()
            .filter(|i| matches!(&i.matcher, Matcher::Glob(g) if g.matches(&link.name)))
            .max_by_key(|i| match &i.matcher {
                Matcher::Glob(g) => g.as_str().len(),
                _ => 0,
            })
    };
    let by_type = || {
        interfaces
            .iter()
            .find(|i| i.matcher == Matcher::Ethernet && link.kind == LinkKind::Ethernet)
    };
    by_mac.or_else(by_name).or_else(by_glob).or_else(by_type)
}

/// Links to create before addresses are set: VLANs and bridges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Create {
    Vlan { name: String, parent: u32, id: u16 },
    Bridge { name: String },
}

/// The links to create, given the links that exist. Creating is skipped for
/// names that exist already, so running twice does the same.
pub fn creations(interfaces: &[Interface], links: &[Link]) -> Vec<Create> {
    let exists = |name: &str| links.iter().any(|l| l.name == name);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for i in interfaces {
        if i.bridge == BridgeRole::Create {
            if let Matcher::Name(n) = &i.matcher {
                if !exists(n) && seen.insert(n.clone()) {
                    out.push(Create::Bridge { name: n.clone() });
                }
            }
        }
    }
    for link in links {
        let Some(i) = find(interfaces, link) else {
            continue;
        };
        if let BridgeRole::PortOf(br) = &i.bridge {
            if !exists(br) && seen.insert(br.clone()) {
                out.push(Create::Bridge { name: br.clone() });
            }
        }
        // A VLAN link matched by its parent's glob gets no VLANs of its
        // own: `eth*: {vlans: '10'}` would otherwise stack eth0.10.10 on
        // each run.
        let is_vlan = link.kind == LinkKind::Other("vlan".to_owned());
        for v in i.vlans.iter().filter(|_| !is_vlan) {
            let name = v.link_name(&link.name);
            if !exists(&name) && seen.insert(name.clone()) {
                out.push(Create::Vlan {
                    name,
                    parent: link.index,
                    id: v.id,
                });
            }
        }
    }
    out
}

/// What to do on one link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkPlan {
    pub index: u32,
    pub name: String,
    /// The entry that matched; `None` for a link only brought up (lo).
    pub key: Option<String>,
    pub mtu: Option<u32>,
    pub addresses: Vec<IpNet>,
    pub gateway: Option<Ipv4Addr>,
    pub gateway_ipv6: Option<Ipv6Addr>,
    pub dhcp: bool,
    /// The bridge to make this link a port of (its index).
    pub controller: Option<u32>,
}

/// The links to configure and what was configured but not found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub links: Vec<LinkPlan>,
    pub warnings: Vec<String>,
}

impl Plan {
    /// The names of the links that get DHCP.
    pub fn dhcp_links(&self) -> Vec<String> {
        self.links
            .iter()
            .filter(|l| l.dhcp)
            .map(|l| l.name.clone())
            .collect()
    }
}

/// Matches links against the settings. Loopback is always brought up; a
/// link no entry matches is left alone (containers' veths, docker0, ...).
pub fn plan(settings: &Settings, links: &[Link]) -> Plan {
    let mut plan = Plan::default();
    for link in links {
        let entry = find(&settings.interfaces, link);
        let Some(i) = entry else {
            if link.kind == LinkKind::Loopback {
                plan.links.push(LinkPlan {
                    index: link.index,
                    name: link.name.clone(),
                    key: None,
                    mtu: None,
                    addresses: Vec::new(),
                    gateway: None,
                    gateway_ipv6: None,
                    dhcp: false,
                    controller: None,
                });
            }
            continue;
        };
        let controller = match &i.bridge {
            BridgeRole::PortOf(br) => match links.iter().find(|l| l.name == *br) {
                Some(b) => Some(b.index),
                None => {
                    plan.warnings.push(format!(
                        "rancher.network.interfaces.{}.bridge: no link named {br}",
                        i.key
                    ));
                    None
                }
            },
            _ => None,
        };
        plan.links.push(LinkPlan {
            index: link.index,
            name: link.name.clone(),
            key: Some(i.key.clone()),
            mtu: i.mtu,
            addresses: i.addresses.clone(),
            gateway: i.gateway,
            gateway_ipv6: i.gateway_ipv6,
            // Loopback never asks for a lease, even under `*: {dhcp: true}`.
            dhcp: i.dhcp && link.kind != LinkKind::Loopback,
            controller,
        });
    }
    for i in &settings.interfaces {
        let found = match &i.matcher {
            Matcher::Name(n) => links.iter().any(|l| l.name == *n),
            Matcher::Mac(m) => links.iter().any(|l| l.mac.as_deref() == Some(m)),
            Matcher::Glob(_) | Matcher::Ethernet => true,
        };
        if !found {
            plan.warnings.push(format!(
                "rancher.network.interfaces.{}: no such link, skipped",
                i.key
            ));
        }
    }
    plan
}

/// The text of resolv.conf: the static nameservers and search domains when
/// set (each replaces what DHCP gave), otherwise those of the leases in
/// order, without repeats. `None` when there is nothing to write, so an
/// existing file is left as it is.
pub fn resolv_conf(stat: &Dns, leases: &[Dns]) -> Option<String> {
    fn union<T: Clone + PartialEq>(lists: impl Iterator<Item = Vec<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for item in lists.flatten() {
            if !out.contains(&item) {
                out.push(item);
            }
        }
        out
    }
    let nameservers = if stat.nameservers.is_empty() {
        union(leases.iter().map(|l| l.nameservers.clone()))
    } else {
        stat.nameservers.clone()
    };
    let search = if stat.search.is_empty() {
        union(leases.iter().map(|l| l.search.clone()))
    } else {
        stat.search.clone()
    };
    if nameservers.is_empty() && search.is_empty() {
        return None;
    }
    let mut text = String::from("# Written by ros netconf from rancher.network.dns and DHCP\n");
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    for ns in nameservers {
        text.push_str(&format!("nameserver {ns}\n"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(yaml: &str) -> NetworkConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    fn settings(yaml: &str) -> Settings {
        Settings::from_config(&net(yaml)).unwrap()
    }

    fn error(yaml: &str) -> String {
        Settings::from_config(&net(yaml)).unwrap_err().to_string()
    }

    fn link(index: u32, name: &str, mac: &str, kind: LinkKind) -> Link {
        Link {
            index,
            name: name.to_owned(),
            mac: Some(mac.to_owned()),
            kind,
            controller: None,
        }
    }

    fn links() -> Vec<Link> {
        vec![
            link(1, "lo", "00:00:00:00:00:00", LinkKind::Loopback),
            link(2, "ens3", "52:54:00:12:34:56", LinkKind::Ethernet),
            link(3, "eth1", "52:54:00:00:00:01", LinkKind::Ethernet),
            link(
                4,
                "veth1234",
                "aa:aa:aa:aa:aa:aa",
                LinkKind::Other("veth".into()),
            ),
        ]
    }

    #[test]
    fn default_is_dhcp_on_every_ethernet_link_whatever_its_name() {
        let p = plan(&settings("{}"), &links());
        let names: Vec<_> = p.links.iter().map(|l| (l.name.as_str(), l.dhcp)).collect();
        assert_eq!(names, [("lo", false), ("ens3", true), ("eth1", true)]);
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn mac_beats_name_beats_longest_glob() {
        let s = settings(
            "interfaces:\n  'e*': {mtu: 1000}\n  'eth*': {mtu: 1100}\n  eth1: {mtu: 1200}\n  mac=52:54:00:00:00:01: {mtu: 1300}\n",
        );
        let l = links();
        assert_eq!(find(&s.interfaces, &l[2]).unwrap().mtu, Some(1300));
        let renamed = Link {
            mac: None,
            ..l[2].clone()
        };
        assert_eq!(find(&s.interfaces, &renamed).unwrap().mtu, Some(1200));
        let other = Link {
            name: "eth7".into(),
            mac: None,
            ..l[2].clone()
        };
        assert_eq!(find(&s.interfaces, &other).unwrap().mtu, Some(1100));
        assert_eq!(find(&s.interfaces, &l[1]).unwrap().mtu, Some(1000));
        // Configured interfaces replace the default: the veth is left alone.
        assert!(find(&s.interfaces, &l[3]).is_none());
    }

    #[test]
    fn match_key_overrides_the_name_and_mac_is_case_insensitive() {
        let s = settings("interfaces:\n  lan: {match: 'MAC=52-54-00-12-34-56', dhcp: true}\n");
        let p = plan(&s, &links());
        assert_eq!(p.dhcp_links(), ["ens3"]);
    }

    #[test]
    fn static_addresses_gateways_and_mtu() {
        let s = settings(
            "interfaces:\n  eth1:\n    address: 10.0.0.2/24\n    addresses: [10.0.1.2/24, 'fd00::2/64', 10.0.0.2/24]\n    gateway: 10.0.0.1\n    gateway_ipv6: 'fd00::1'\n    mtu: 9000\n",
        );
        let p = plan(&s, &links());
        let eth1 = p.links.iter().find(|l| l.name == "eth1").unwrap();
        let addrs: Vec<String> = eth1.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["10.0.0.2/24", "10.0.1.2/24", "fd00::2/64"]);
        assert_eq!(eth1.gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(eth1.gateway_ipv6, Some("fd00::1".parse().unwrap()));
        assert_eq!(eth1.mtu, Some(9000));
        assert!(!eth1.dhcp);
        assert!(p.dhcp_links().is_empty());
    }

    #[test]
    fn broken_values_name_the_key_and_what_was_expected() {
        for (yaml, expected) in [
            (
                "interfaces: {eth0: {address: 10.0.0.2}}",
                "rancher.network.interfaces.eth0.address: \"10.0.0.2\" is not an address with a prefix length, such as 192.168.1.10/24",
            ),
            (
                "interfaces: {eth0: {addresses: [10.0.0.2/24, bad]}}",
                "rancher.network.interfaces.eth0.addresses[1]: \"bad\" is not an address with a prefix length, such as 192.168.1.10/24",
            ),
            (
                "interfaces: {eth0: {gateway: 'fd00::1'}}",
                "rancher.network.interfaces.eth0.gateway: \"fd00::1\" is not an IPv4 address (IPv6 goes in gateway_ipv6)",
            ),
            (
                "interfaces: {eth0: {mtu: 20}}",
                "rancher.network.interfaces.eth0.mtu: 20 is out of range: expected 68 to 65535",
            ),
            (
                "interfaces: {'mac=52:54:00': {dhcp: true}}",
                "rancher.network.interfaces.mac=52:54:00: \"mac=52:54:00\": expected mac=aa:bb:cc:dd:ee:ff",
            ),
            (
                "interfaces: {eth0: {vlans: '100,5000'}}",
                "rancher.network.interfaces.eth0.vlans: \"5000\": expected a VLAN id from 1 to 4094, optionally followed by :name",
            ),
            (
                "dns: {nameservers: [8.8.8.8, dns.example]}",
                "rancher.network.dns.nameservers[1]: \"dns.example\" is not an IP address",
            ),
            (
                "interfaces: {'eth*': {bridge: true}}",
                "rancher.network.interfaces.eth*.bridge: bridge: true needs an interface key that is a plain name (the bridge to create)",
            ),
        ] {
            assert_eq!(error(yaml), expected, "{yaml}");
        }
    }

    #[test]
    fn unsupported_keys_are_named_in_warnings() {
        let s =
            settings("http_proxy: http://p:3128\ninterfaces:\n  eth0: {bond: bond0, dhcp: true}\n");
        assert_eq!(
            s.warnings,
            ["rancher.network.interfaces.eth0.bond: not supported yet, ignored"]
        );
    }

    #[test]
    fn configured_names_that_do_not_exist_are_reported() {
        let s = settings("interfaces:\n  eth9: {dhcp: true}\n  'eth*': {dhcp: true}\n");
        let p = plan(&s, &links());
        assert_eq!(
            p.warnings,
            ["rancher.network.interfaces.eth9: no such link, skipped"]
        );
        assert_eq!(p.dhcp_links(), ["eth1"]);
    }

    #[test]
    fn loopback_is_brought_up_but_never_gets_dhcp() {
        let p = plan(&settings("interfaces: {'*': {dhcp: true}}"), &links());
        let lo = p.links.iter().find(|l| l.name == "lo").unwrap();
        assert!(!lo.dhcp);
        assert_eq!(p.dhcp_links(), ["ens3", "eth1", "veth1234"]);
    }

    #[test]
    fn vlans_and_bridges_are_created_once() {
        let s = settings(
            "interfaces:\n  eth1: {vlans: '100, 200:guests', bridge: br0}\n  br0: {bridge: true, address: 10.1.0.1/24}\n  eth1.100: {address: 10.100.0.2/24}\n",
        );
        let c = creations(&s.interfaces, &links());
        assert_eq!(
            c,
            [
                Create::Bridge { name: "br0".into() },
                Create::Vlan {
                    name: "eth1.100".into(),
                    parent: 3,
                    id: 100
                },
                Create::Vlan {
                    name: "guests".into(),
                    parent: 3,
                    id: 200
                },
            ]
        );
        let mut after = links();
        after.push(link(
            5,
            "br0",
            "02:00:00:00:00:05",
            LinkKind::Other("bridge".into()),
        ));
        after.push(link(
            6,
            "eth1.100",
            "52:54:00:00:00:01",
            LinkKind::Other("vlan".into()),
        ));
        after.push(link(
            7,
            "guests",
            "52:54:00:00:00:01",
            LinkKind::Other("vlan".into()),
        ));
        assert!(creations(&s.interfaces, &after).is_empty());
        let glob = settings("interfaces:\n  'eth*': {vlans: '10'}\n");
        let mut with_vlan = links();
        with_vlan.push(link(
            8,
            "eth1.10",
            "52:54:00:00:00:01",
            LinkKind::Other("vlan".into()),
        ));
        assert!(creations(&glob.interfaces, &with_vlan).is_empty());
        let p = plan(&s, &after);
        assert_eq!(
            p.links
                .iter()
                .find(|l| l.name == "eth1")
                .unwrap()
                .controller,
            Some(5)
        );
        let v = p.links.iter().find(|l| l.name == "eth1.100").unwrap();
        assert_eq!(v.addresses[0].to_string(), "10.100.0.2/24");
    }

    #[test]
    fn resolv_conf_static_wins_per_field_and_leases_merge() {
        let ns = |s: &str| s.parse::<IpAddr>().unwrap();
        let lease = |n: &[&str], s: &[&str]| Dns {
            nameservers: n.iter().map(|x| ns(x)).collect(),
            search: s.iter().map(|x| x.to_string()).collect(),
        };
        let leases = [
            lease(&["10.0.0.53"], &["lan"]),
            lease(&["10.0.0.53", "10.1.0.53"], &[]),
        ];
        assert_eq!(
            resolv_conf(&Dns::default(), &leases).unwrap(),
            "# Written by ros netconf from rancher.network.dns and DHCP\nsearch lan\nnameserver 10.0.0.53\nnameserver 10.1.0.53\n"
        );
        let stat = lease(&["1.1.1.1"], &[]);
        assert_eq!(
            resolv_conf(&stat, &leases).unwrap(),
            "# Written by ros netconf from rancher.network.dns and DHCP\nsearch lan\nnameserver 1.1.1.1\n"
        );
        assert_eq!(resolv_conf(&Dns::default(), &[]), None);
    }
}

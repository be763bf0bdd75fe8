//! What a datasource says about the machine besides user-data: hostname,
//! SSH public keys and network config, and the translation of each cloud's
//! network description into the `rancher.network` form (best effort).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Metadata of the machine, as far as the datasource gives it.
///
/// Saved as YAML to /var/lib/rancher/conf/metadata (without `network`,
/// which goes to cloud-config.d/network.yml).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The datasource that answered, as written in the datasource list.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The machine's hostname; applied only if the config sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// SSH public keys, appended to `ssh_authorized_keys`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
    /// Network config in the form of `rancher.network` (interfaces keyed by
    /// `mac=...` or by name, dns.nameservers, dns.search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Value>,
}

impl Metadata {
    /// Whether the source said nothing at all.
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none() && self.public_keys.is_empty() && self.network.is_none()
    }
}

/// Public keys from the forms clouds use: a string (one key a line), a
/// list, or a mapping of names to keys (OpenStack, NoCloud).
pub(crate) fn keys_from(value: Option<&Value>) -> Vec<String> {
    let mut keys = Vec::new();
    let mut add = |s: &str| {
        for line in s.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') && !keys.iter().any(|k| k == line) {
                keys.push(line.to_owned());
            }
        }
    };
    match value {
        Some(Value::String(s)) => add(s),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).for_each(add),
        Some(Value::Object(map)) => map.values().filter_map(Value::as_str).for_each(add),
        _ => {}
    }
    keys
}

/// A non-empty string field.
pub(crate) fn string(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The prefix length of a dotted IPv4 netmask, or the number itself when
/// the mask is already a prefix length.
fn prefix_len(mask: &str) -> Option<u32> {
    if let Ok(n) = mask.parse::<u32>() {
        return Some(n);
    }
    let bits = u32::from(mask.parse::<Ipv4Addr>().ok()?);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then_some(bits.leading_ones())
}

/// `address/prefix` from an address that may already carry its prefix and a
/// netmask that may be dotted, a number or missing.
fn cidr(address: &str, mask: Option<&Value>) -> String {
    if address.contains('/') {
        return address.to_owned();
    }
    let prefix = match mask {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as u32),
        Some(Value::String(s)) => prefix_len(s).or_else(|| ipv6_prefix_len(s)),
        _ => None,
    };
    match prefix {
        Some(p) => format!("{address}/{p}"),
        None => address.to_owned(),
    }
}

fn ipv6_prefix_len(mask: &str) -> Option<u32> {
    let bits = u128::from(mask.parse::<std::net::Ipv6Addr>().ok()?);
    (bits.leading_ones() + bits.trailing_zeros() == 128).then_some(bits.leading_ones())
}

fn push_unique(list: &mut Vec<Value>, item: Value) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// Builds a `rancher.network` value from interfaces and DNS; `None` when
/// both are empty.
fn network(
    interfaces: Map<String, Value>,
    nameservers: Vec<Value>,
    search: Vec<Value>,
) -> Option<Value> {
    let mut net = Map::new();
    if !interfaces.is_empty() {
        net.insert("interfaces".into(), Value::Object(interfaces));
    }
    let mut dns = Map::new();
    if !nameservers.is_empty() {
        dns.insert("nameservers".into(), Value::Array(nameservers));
    }
    if !search.is_empty() {
        dns.insert("search".into(), Value::Array(search));
    }
    if !dns.is_empty() {
        net.insert("dns".into(), Value::Object(dns));
    }
    (!net.is_empty()).then_some(Value::Object(net))
}

/// DigitalOcean's `interfaces` and `dns` of /metadata/v1.json: each
/// interface keyed by its MAC with its static addresses; the public
/// interface carries the gateways.
pub(crate) fn network_from_digitalocean(doc: &Value) -> Option<Value> {
    let mut interfaces = Map::new();
    for kind in ["public", "private"] {
        let Some(list) = doc
            .pointer(&format!("/interfaces/{kind}"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for iface in list {
            let Some(mac) = string(iface, "mac") else {
                continue;
            };
            let mut out = Map::new();
            let mut addresses = Vec::new();
            if let Some(v4) = iface.get("ipv4") {
                if let Some(ip) = string(v4, "ip_address") {
                    push_unique(&mut addresses, json!(cidr(&ip, v4.get("netmask"))));
                }
                if let Some(gw) = string(v4, "gateway").filter(|_| kind == "public") {
                    out.insert("gateway".into(), json!(gw));
                }
            }
            if let Some(v6) = iface.get("ipv6") {
                if let Some(ip) = string(v6, "ip_address") {
                    push_unique(&mut addresses, json!(cidr(&ip, v6.get("cidr"))));
                }
                if let Some(gw) = string(v6, "gateway").filter(|_| kind == "public") {
                    out.insert("gateway_ipv6".into(), json!(gw));
                }
            }
            if let Some(ip) = iface
                .get("anchor_ipv4")
                .and_then(|a| string(a, "ip_address").map(|ip| cidr(&ip, a.get("netmask"))))
            {
                push_unique(&mut addresses, json!(ip));
            }
            if addresses.is_empty() {
                out.insert("dhcp".into(), json!(true));
            } else {
                out.insert("addresses".into(), Value::Array(addresses));
            }
            interfaces.insert(format!("mac={mac}"), Value::Object(out));
        }
    }
    let nameservers = doc
        .pointer("/dns/nameservers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    network(interfaces, nameservers, Vec::new())
}

/// OpenStack's network_data.json: physical links keyed by MAC, their ipv4
/// and ipv6 networks (static addresses, default-route gateways, `*_dhcp`
/// types as dhcp) and the dns services. Bonds and VLANs are not translated.
pub(crate) fn network_from_openstack(doc: &Value) -> Option<Value> {
    let mut interfaces = Map::new();
    let mut key_of = std::collections::HashMap::new();
    for link in doc
        .get("links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(mac)) = (string(link, "id"), string(link, "ethernet_mac_address"))
        else {
            continue;
        };
        let mut out = Map::new();
        if let Some(mtu) = link.get("mtu").filter(|m| m.is_u64()) {
            out.insert("mtu".into(), mtu.clone());
        }
        let key = format!("mac={mac}");
        interfaces.insert(key.clone(), Value::Object(out));
        key_of.insert(id, key);
    }
    for net in doc
        .get("networks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(Value::Object(iface)) = string(net, "link")
            .and_then(|l| key_of.get(&l))
            .and_then(|k| interfaces.get_mut(k))
        else {
            continue;
        };
        let kind = string(net, "type").unwrap_or_default();
        if kind.ends_with("_dhcp") || kind == "dhcp4" || kind == "dhcp6" {
            iface.insert("dhcp".into(), json!(true));
            continue;
        }
        if let Some(ip) = string(net, "ip_address") {
            let addr = json!(cidr(&ip, net.get("netmask")));
            let list = iface.entry("addresses").or_insert_with(|| json!([]));
            if let Value::Array(list) = list {
                push_unique(list, addr);
            }
        }
        for route in net
            .get("routes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let default = matches!(
                string(route, "network").as_deref(),
                Some("0.0.0.0") | Some("::")
            ) && matches!(
                string(route, "netmask").as_deref(),
                Some("0.0.0.0") | Some("::") | Some("0")
            );
            if let (true, Some(gw)) = (default, string(route, "gateway")) {
                let key = if gw.contains(':') {
                    "gateway_ipv6"
                } else {
                    "gateway"
                };
                iface.insert(key.into(), json!(gw));
            }
        }
    }
    let nameservers = doc
        .get("services")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| string(s, "type").as_deref() == Some("dns"))
        .filter_map(|s| string(s, "address").map(Value::String))
        .collect();
    network(interfaces, nameservers, Vec::new())
}

/// A cloud-init network-config (NoCloud), version 1 or 2, possibly under a
/// top-level `network:` key: physical interfaces / ethernets with dhcp,
/// static addresses, gateways, MTU and nameservers. Bonds, bridges and VLANs
/// are not translated.
pub(crate) fn network_from_cloud_init(doc: &Value) -> Option<Value> {
    let doc = doc.get("network").unwrap_or(doc);
    let mut interfaces = Map::new();
    let mut nameservers = Vec::new();
    let mut search = Vec::new();
    let mut add_dns = |dns: &Value, addr_key: &str, search_key: &str| {
        for item in dns
            .get(addr_key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            push_unique(&mut nameservers, item.clone());
        }
        for item in dns
            .get(search_key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            push_unique(&mut search, item.clone());
        }
    };
    let version = doc.get("version").and_then(Value::as_u64).unwrap_or(1);
    if version == 2 {
        let ethernets = doc.get("ethernets").and_then(Value::as_object);
        for (id, eth) in ethernets.into_iter().flatten() {
            let key = match eth.pointer("/match/macaddress").and_then(Value::as_str) {
                Some(mac) => format!("mac={mac}"),
                None => eth
                    .pointer("/match/name")
                    .and_then(Value::as_str)
                    .or_else(|| eth.get("set-name").and_then(Value::as_str))
                    .unwrap_or(id)
                    .to_owned(),
            };
            let mut out = Map::new();
            if eth.get("dhcp4").and_then(Value::as_bool) == Some(true)
                || eth.get("dhcp6").and_then(Value::as_bool) == Some(true)
            {
                out.insert("dhcp".into(), json!(true));
            }
            if let Some(addrs) = eth.get("addresses").and_then(Value::as_array) {
                out.insert("addresses".into(), Value::Array(addrs.clone()));
            }
            for (from, to) in [
                ("gateway4", "gateway"),
                ("gateway6", "gateway_ipv6"),
                ("mtu", "mtu"),
            ] {
                if let Some(v) = eth.get(from) {
                    out.insert(to.into(), v.clone());
                }
            }
            if let Some(ns) = eth.get("nameservers") {
                add_dns(ns, "addresses", "search");
            }
            interfaces.insert(key, Value::Object(out));
        }
    } else {
        for item in doc
            .get("config")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match string(item, "type").as_deref() {
                Some("physical") => {
                    let key = match string(item, "mac_address") {
                        Some(mac) => format!("mac={mac}"),
                        None => match string(item, "name") {
                            Some(name) => name,
                            None => continue,
                        },
                    };
                    let mut out = Map::new();
                    if let Some(mtu) = item.get("mtu").filter(|m| m.is_u64()) {
                        out.insert("mtu".into(), mtu.clone());
                    }
                    let mut addresses = Vec::new();
                    for subnet in item
                        .get("subnets")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let kind = string(subnet, "type").unwrap_or_default();
                        if kind.starts_with("dhcp") {
                            out.insert("dhcp".into(), json!(true));
                            continue;
                        }
                        if let Some(ip) = string(subnet, "address") {
                            push_unique(&mut addresses, json!(cidr(&ip, subnet.get("netmask"))));
                        }
                        if let Some(gw) = string(subnet, "gateway") {
                            let key = if gw.contains(':') {
                                "gateway_ipv6"
                            } else {
                                "gateway"
                            };
                            out.insert(key.into(), json!(gw));
                        }
                        add_dns(subnet, "dns_nameservers", "dns_search");
                    }
                    if !addresses.is_empty() {
                        out.insert("addresses".into(), Value::Array(addresses));
                    }
                    interfaces.insert(key, Value::Object(out));
                }
                Some("nameserver") => add_dns(item, "address", "search"),
                _ => {}
            }
        }
    }
    network(interfaces, nameservers, search)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_strings_lists_and_maps() {
        assert_eq!(keys_from(Some(&json!("a\n\nb\n# c"))), ["a", "b"]);
        assert_eq!(keys_from(Some(&json!(["a", "a", "b"]))), ["a", "b"]);
        assert_eq!(keys_from(Some(&json!({"mykey": "a"}))), ["a"]);
        assert!(keys_from(None).is_empty());
    }

    #[test]
    fn netmasks_become_prefixes() {
        assert_eq!(
            cidr("10.0.0.5", Some(&json!("255.255.240.0"))),
            "10.0.0.5/20"
        );
        assert_eq!(cidr("2001:db8::5", Some(&json!(64))), "2001:db8::5/64");
        assert_eq!(
            cidr("10.0.0.5/8", Some(&json!("255.255.255.0"))),
            "10.0.0.5/8"
        );
        assert_eq!(cidr("10.0.0.5", Some(&json!("255.0.255.0"))), "10.0.0.5");
    }

    #[test]
    fn openstack_network_data_translates() {
        let doc = json!({
            "links": [{"id": "tap0", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01", "mtu": 1450},
                      {"id": "tap1", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:02"}],
            "networks": [
                {"id": "n0", "type": "ipv4", "link": "tap0", "ip_address": "10.0.0.5", "netmask": "255.255.255.0",
                 "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}]},
                {"id": "n1", "type": "ipv4_dhcp", "link": "tap1"}],
            "services": [{"type": "dns", "address": "10.0.0.2"}]
        });
        assert_eq!(
            network_from_openstack(&doc).unwrap(),
            json!({
                "interfaces": {
                    "mac=fa:16:3e:00:00:01": {"mtu": 1450, "addresses": ["10.0.0.5/24"], "gateway": "10.0.0.1"},
                    "mac=fa:16:3e:00:00:02": {"dhcp": true}},
                "dns": {"nameservers": ["10.0.0.2"]}
            })
        );
    }

    #[test]
    fn cloud_init_v1_and_v2_translate() {
        let v1 = json!({"version": 1, "config": [
            {"type": "physical", "name": "eth0", "mac_address": "52:54:00:12:34:00",
             "subnets": [{"type": "static", "address": "192.168.1.10", "netmask": "255.255.255.0",
                          "gateway": "192.168.1.1", "dns_nameservers": ["192.168.1.2"]}]},
            {"type": "nameserver", "address": ["1.1.1.1"], "search": ["lan"]}]});
        assert_eq!(
            network_from_cloud_init(&v1).unwrap(),
            json!({
                "interfaces": {"mac=52:54:00:12:34:00": {"addresses": ["192.168.1.10/24"], "gateway": "192.168.1.1"}},
                "dns": {"nameservers": ["192.168.1.2", "1.1.1.1"], "search": ["lan"]}
            })
        );
        let v2 = json!({"network": {"version": 2, "ethernets": {"eth0": {"dhcp4": true}}}});
        assert_eq!(
            network_from_cloud_init(&v2).unwrap(),
            json!({"interfaces": {"eth0": {"dhcp": true}}})
        );
        assert_eq!(
            network_from_cloud_init(&json!({"version": 1, "config": []})),
            None
        );
    }
}

//! The kernel side: reading links and applying a [`Plan`] through rtnetlink.
//!
//! Every request is idempotent (addresses and routes are replaced, existing
//! links are not created again), so running `ros netconf` twice, or after
//! dhcpcd has configured a link, changes nothing that is already right.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo, LinkLayerType, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVlan, RouteMessageBuilder};

use crate::error::{netlink, Error, Result};
use crate::plan::{Create, Link, LinkKind, LinkPlan, Plan};

/// A netlink connection whose driver runs on the current tokio runtime.
pub fn connect() -> Result<Handle> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Every link, in index order.
pub async fn links(handle: &Handle) -> Result<Vec<Link>> {
    let mut stream = handle.link().get().execute();
    let mut out = Vec::new();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| netlink("list links", e))?
    {
        if let Some(link) = to_link(&msg) {
            out.push(link);
        }
    }
    out.sort_by_key(|l| l.index);
    Ok(out)
}

fn to_link(msg: &LinkMessage) -> Option<Link> {
    let mut name = None;
    let mut mac = None;
    let mut info_kind = None;
    let mut controller = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                mac = Some(
                    bytes
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                )
            }
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        info_kind = Some(k.to_string());
                    }
                }
            }
            LinkAttribute::Controller(c) => controller = Some(*c),
            _ => {}
        }
    }
    let kind = match (msg.header.link_layer_type, info_kind) {
        (LinkLayerType::Loopback, _) => LinkKind::Loopback,
        (LinkLayerType::Ether, None) => LinkKind::Ethernet,
        (_, Some(k)) => LinkKind::Other(k),
        (other, None) => LinkKind::Other(format!("{other:?}").to_lowercase()),
    };
    Some(Link {
        index: msg.header.index,
        name: name?,
        mac,
        kind,
        controller,
    })
}

/// Creates VLANs and bridges. A link that appeared meanwhile (EEXIST) is
/// fine; one that cannot be created is returned, and the others are still
/// made (a missing VLAN must not keep the rest of the network down).
pub async fn create(handle: &Handle, creations: &[Create]) -> Vec<Error> {
    let mut failed = Vec::new();
    for c in creations {
        let (what, message) = match c {
            Create::Vlan { name, parent, id } => (
                format!("create vlan {name} (id {id})"),
                LinkVlan::new(name, *parent, *id).up().build(),
            ),
            Create::Bridge { name } => (
                format!("create bridge {name}"),
                LinkBridge::new(name).up().build(),
            ),
        };
        match handle.link().add(message).execute().await {
            Ok(()) => tracing::info!("{}", what.replacen("create", "created", 1)),
            Err(e) if is_errno(&e, libc::EEXIST) => {}
            Err(e) if is_errno(&e, libc::EOPNOTSUPP) => failed.push(netlink(
                format!(
                    "{what}: the kernel has no {} support",
                    if matches!(c, Create::Vlan { .. }) {
                        "802.1Q (8021q)"
                    } else {
                        "bridge"
                    }
                ),
                e,
            )),
            Err(e) => failed.push(netlink(what, e)),
        }
    }
    failed
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == errno)
}

/// Applies the plan: port membership, MTU and up first, then addresses,
/// then gateways (a gateway needs the address that makes it reachable).
/// A link that fails is returned and the others are still configured.
pub async fn apply(handle: &Handle, plan: &Plan) -> Vec<Error> {
    let mut failed = Vec::new();
    let mut ok = Vec::new();
    for l in &plan.links {
        match apply_link(handle, l).await {
            Ok(()) => ok.push(l),
            Err(e) => failed.push(e),
        }
    }
    for l in ok {
        if let Err(e) = apply_routes(handle, l).await {
            failed.push(e);
        }
    }
    failed
}

async fn apply_link(handle: &Handle, l: &LinkPlan) -> Result<()> {
    let name = &l.name;
    if let Some(controller) = l.controller {
        let msg = LinkUnspec::new_with_index(l.index)
            .controller(controller)
            .build();
        handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| netlink(format!("add {name} to its bridge"), e))?;
    }
    let mut msg = LinkUnspec::new_with_index(l.index).up();
    if let Some(mtu) = l.mtu {
        msg = msg.mtu(mtu);
    }
    handle
        .link()
        .set(msg.build())
        .execute()
        .await
        .map_err(|e| match l.mtu {
            Some(mtu) => netlink(format!("bring {name} up with mtu {mtu}"), e),
            None => netlink(format!("bring {name} up"), e),
        })?;
    for net in &l.addresses {
        handle
            .address()
            .add(l.index, net.addr(), net.prefix_len())
            .replace()
            .execute()
            .await
            .map_err(|e| netlink(format!("add address {net} to {name}"), e))?;
        tracing::info!("{name}: {net} (static)");
    }
    if l.key.is_none() {
        tracing::debug!("{name}: up");
    } else if l.addresses.is_empty() && !l.dhcp {
        tracing::info!("{name}: up, no address configured");
    }
    Ok(())
}

async fn apply_routes(handle: &Handle, l: &LinkPlan) -> Result<()> {
    let name = &l.name;
    if let Some(gw) = l.gateway {
        let route = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .output_interface(l.index)
            .gateway(gw)
            .build();
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| netlink(format!("add default route via {gw} on {name}"), e))?;
        tracing::info!("{name}: default route via {gw}");
    }
    if let Some(gw) = l.gateway_ipv6 {
        let route = RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .output_interface(l.index)
            .gateway(gw)
            .build();
        handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| netlink(format!("add default ipv6 route via {gw} on {name}"), e))?;
        tracing::info!("{name}: default ipv6 route via {gw}");
    }
    Ok(())
}

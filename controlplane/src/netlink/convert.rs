//! rtnetlink messages -> [`KernelEvent`]s. One `process_<message>` per
//! message type (STYLE.md 15); anything xdpgate does not use gives nothing.
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{InfoData, InfoVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteType},
};

use super::{KNextHop, KRoute, KRouteKey, KRouteKind, KernelEvent, LinkState, RT_TABLE_MAIN};

/// `NLM_F_REPLACE` (include/uapi/linux/netlink.h).
pub const NLM_F_REPLACE: u16 = 0x100;

/// Convert one rtnetlink message; `nl_flags` are its netlink header flags.
pub fn process_message(msg: &RouteNetlinkMessage, nl_flags: u16) -> Option<KernelEvent> {
    match msg {
        RouteNetlinkMessage::NewLink(m) => Some(KernelEvent::Link(process_link(m))),
        RouteNetlinkMessage::DelLink(m) => Some(KernelEvent::LinkGone(m.header.index)),
        RouteNetlinkMessage::NewRoute(m) if nl_flags & NLM_F_REPLACE != 0 => {
            process_route(m).map(KernelEvent::RouteReplace)
        }
        RouteNetlinkMessage::NewRoute(m) => process_route(m).map(KernelEvent::Route),
        RouteNetlinkMessage::DelRoute(m) => process_route(m).map(KernelEvent::RouteGone),
        RouteNetlinkMessage::NewNeighbour(m) => process_neighbour(m, false),
        RouteNetlinkMessage::DelNeighbour(m) => process_neighbour(m, true),
        _ => None,
    }
}

pub fn process_link(m: &LinkMessage) -> LinkState {
    let mut l = LinkState {
        ifindex: m.header.index,
        name: String::new(),
        mac: [0; 6],
        mtu: 1500,
        up: m.header.flags.contains(LinkFlags::Up) && m.header.flags.contains(LinkFlags::Running),
        admin_up: m.header.flags.contains(LinkFlags::Up),
        vlan: None,
    };
    let mut parent = None;
    let mut vid = None;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(mac) if mac.len() == 6 => l.mac.copy_from_slice(mac),
            LinkAttribute::Mtu(mtu) => l.mtu = *mtu,
            LinkAttribute::Link(p) => parent = Some(*p),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Data(InfoData::Vlan(v)) = i {
                        for x in v {
                            if let InfoVlan::Id(id) = x {
                                vid = Some(*id as u32);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let (Some(p), Some(v)) = (parent, vid) {
        l.vlan = Some((p, v));
    }
    l
}

fn route_address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A route of an IP family, or None (MPLS, cloned cache entries, ...).
pub fn process_route(m: &RouteMessage) -> Option<KRoute> {
    let h = &m.header;
    let mut table = h.table as u32;
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = 0;
    let mut multipath = Vec::new();
    let mut nhid = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_address(d),
            RouteAttribute::Gateway(g) => gateway = route_address(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::NhId(id) => nhid = Some(*id),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    let gw = hop.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => route_address(g),
                        _ => None,
                    });
                    multipath.push(KNextHop {
                        gateway: gw,
                        ifindex: hop.interface_index,
                    });
                }
            }
            _ => {}
        }
    }
    let family_v4 = match h.address_family {
        netlink_packet_route::AddressFamily::Inet => true,
        netlink_packet_route::AddressFamily::Inet6 => false,
        _ => return None,
    };
    let addr = dst.unwrap_or(if family_v4 {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    });
    let prefix = IpNet::new(addr, h.destination_prefix_length).ok()?.trunc();
    let kind = match h.kind {
        RouteType::Unicast => KRouteKind::Unicast,
        RouteType::Local => KRouteKind::Local,
        RouteType::BlackHole => KRouteKind::Blackhole,
        RouteType::Unreachable => KRouteKind::Unreachable,
        RouteType::Prohibit => KRouteKind::Prohibit,
        _ => KRouteKind::Other,
    };
    let nexthops = if !multipath.is_empty() {
        multipath
    } else if let Some(ifindex) = oif {
        vec![KNextHop { gateway, ifindex }]
    } else {
        Vec::new()
    };
    if table == 0 {
        table = RT_TABLE_MAIN;
    }
    let oif = if family_v4 { 0 } else { oif.unwrap_or(0) };
    Some(KRoute {
        key: KRouteKey {
            table,
            prefix,
            metric,
            oif,
        },
        kind,
        nexthops,
        nhid,
    })
}

/// Usable states (include/uapi/linux/neighbour.h NUD_VALID, less NUD_NONE):
/// the MAC is known. Failed and incomplete entries have none.
fn usable(state: NeighbourState) -> bool {
    matches!(
        state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    )
}

pub fn process_neighbour(m: &NeighbourMessage, deleted: bool) -> Option<KernelEvent> {
    let mut addr = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                addr = Some(IpAddr::V4(*v4))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                addr = Some(IpAddr::V6(*v6))
            }
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(l);
                mac = Some(m);
            }
            _ => {}
        }
    }
    let addr = addr?;
    // Multicast "neighbours" (NOARP entries such as ff02::2) are not next
    // hops; XDP punts multicast before any neighbour lookup.
    if addr.is_multicast() {
        return None;
    }
    let ifindex = m.header.ifindex;
    match (deleted, mac) {
        (false, Some(mac)) if usable(m.header.state) => {
            Some(KernelEvent::Neighbour { ifindex, addr, mac })
        }
        _ => Some(KernelEvent::NeighbourGone { ifindex, addr }),
    }
}

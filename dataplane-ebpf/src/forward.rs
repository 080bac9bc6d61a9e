//! The fast path: route lookup, next hop (or ECMP member), neighbour,
//! egress checks, rewrite, and the redirect. Anything it should not decide
//! goes to the kernel with a reason (xdp-tools' xdp_forward.bpf.c punts the
//! same way; the kernel then sends the ICMP errors and resolves neighbours).
use aya_ebpf::{bindings::xdp_action, maps::lpm_trie::Key, programs::XdpContext};
use dataplane_common::{
    CHAIN_FORWARD, CHAIN_INPUT, DIR24_LPM, DIR24_TBL8, IFACE_F_FORWARD, IFACE_F_UP, IfaceInfo,
    MAX_ECMP, NH_CONNECTED, NeighKey, NextHop, ROUTE_BLACKHOLE, ROUTE_KERNEL, ROUTE_LOCAL,
    ROUTE_LOOKUP_DIR24, ROUTE_MULTIPATH, ROUTE_PROHIBIT, ROUTE_UNICAST, ROUTE_UNREACHABLE, Reason,
    Route, VlanKey, dir24_decode, ipv4_mapped,
};

use crate::{
    firewall::Scratch,
    headers::{ETH_P_8021Q, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr},
    maps::{
        CONFIG, IFACES, NEIGHBOURS, NEXTHOPS, NH_GROUPS, PORTS, ROUTES_V4, ROUTES_V6, TBL8, TBL24,
        VLANS,
    },
    parse::{L3, Packet, ptr_at},
    rewrite,
};

/// The interface a frame arrived on, after VLAN demultiplexing.
pub struct Ingress {
    /// The logical interface: the port, or its VLAN sub-interface.
    pub ifindex: u32,
    pub info: IfaceInfo,
}

/// Resolve the logical ingress interface of a tagged frame. Untagged frames
/// belong to the port itself.
#[inline(always)]
pub fn ingress(port: u32, port_info: IfaceInfo, packet: &Packet) -> Result<Ingress, Reason> {
    match packet.vlan_depth {
        0 => Ok(Ingress {
            ifindex: port,
            info: port_info,
        }),
        // A priority tag (VID 0, IEEE 802.1Q 9.6) carries no VLAN: the
        // frame belongs to the port itself.
        1 if packet.vid == 0 && packet.tpid == ETH_P_8021Q => Ok(Ingress {
            ifindex: port,
            info: port_info,
        }),
        // Sub-interfaces are 802.1Q: the kernel matches VLAN devices by tag
        // type and id, so an 802.1ad tag never reaches one
        // (net/8021q/vlan_core.c vlan_do_receive).
        1 if packet.tpid != ETH_P_8021Q => Err(Reason::UnknownVlan),
        1 => {
            let key = VlanKey {
                parent_ifindex: port,
                vid: packet.vid,
            };
            // SAFETY: the value is copied out at once.
            let sub = unsafe { VLANS.get(key) }.ok_or(Reason::UnknownVlan)?;
            let info = unsafe { IFACES.get(sub) }.ok_or(Reason::UnknownVlan)?;
            Ok(Ingress {
                ifindex: *sub,
                info: *info,
            })
        }
        // Q-in-Q is terminated by the kernel, if at all.
        _ => Err(Reason::VlanTooDeep),
    }
}

/// What routing decided for a packet that stays on the fast path, for the
/// firewall and then `deliver`.
pub struct Plan {
    /// Counter slot (of the VLAN sub-interface, for a tagged frame).
    pub slot: u32,
    /// The port the frame came in on, and the logical ingress interface.
    pub port: u32,
    pub in_ifindex: u32,
    /// CHAIN_FORWARD or CHAIN_INPUT.
    pub chain: u32,
    /// Egress interface (0: the box itself, or an interface XDP does not
    /// know).
    pub out_ifindex: u32,
    /// What happens once the firewall accepts: `Forwarded` means `deliver`;
    /// anything else is the reason the packet goes to the kernel with.
    /// Set by the caller to the punt reason of a packet the kernel must
    /// carry (a fragment, IPv4 options, IPv6 extension headers), which is
    /// routed and filtered like any other, so the kernel only sees it if
    /// the firewall lets it through; `Forwarded` otherwise.
    pub then: Reason,
    pub nh: NextHop,
    /// Whom the neighbour table is asked for: the gateway, or the
    /// destination itself on a connected route.
    pub neigh_addr: [u8; 16],
}

/// Route `packet` (unicast IP) that arrived on `plan.port` up to the
/// firewall: ingress interface, route, next hop. `Err` is the reason for a
/// packet that ends here, counted under `plan.slot`.
// A BPF-to-BPF call: the verifier's 512-byte stack limit covers a whole
// call chain, so the route, firewall and delivery stages each get a frame
// of their own instead of one frame holding all three.
#[inline(never)]
pub fn route(ctx: &XdpContext, packet: &Packet, s: &mut Scratch) -> Result<(), Reason> {
    let plan = &mut s.plan;
    let port = plan.port;
    // SAFETY: copied out at once.
    let port_info = match unsafe { IFACES.get(port) } {
        Some(info) => *info,
        None => IfaceInfo::default(),
    };
    plan.slot = port_info.counter_slot;
    if port_info.flags & IFACE_F_FORWARD == 0 {
        return Err(Reason::NotForwarded);
    }
    let ingress = ingress(port, port_info, packet)?;
    plan.slot = ingress.info.counter_slot;
    if ingress.info.flags & IFACE_F_FORWARD == 0 {
        return Err(Reason::NotForwarded);
    }
    if !addressed_to(ctx, &ingress.info.mac) {
        return Err(Reason::OtherHost);
    }
    plan.in_ifindex = ingress.ifindex;
    plan_route(ctx, packet, plan)
}

/// Whether the frame's destination MAC is `mac` (group addresses were
/// punted before this point).
#[inline(always)]
fn addressed_to(ctx: &XdpContext, mac: &[u8; 6]) -> bool {
    match ptr_at::<[u8; 6]>(ctx, 0) {
        Ok(dst) => unsafe { *dst == *mac },
        Err(_) => false,
    }
}

/// Destination and TTL / hop limit of the IP header.
struct Dest {
    /// IPv4-mapped for IPv4, as neighbour keys store it.
    addr: [u8; 16],
    ttl: u8,
}

#[inline(always)]
fn lookup(ctx: &XdpContext, l3: &L3) -> Result<(Route, Dest), Reason> {
    if l3.family == 4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, l3.off)?;
        let (daddr, ttl) = unsafe { ((*ip).daddr, (*ip).ttl) };
        // DIR-24-8 (dataplane-common dir24.rs): one array read for any
        // prefix up to /24, two beyond; a block marked DIR24_LPM (no TBL8
        // group was free for it) and the trie backend ask the trie.
        let dir24 = match CONFIG.get(0) {
            Some(config) => config.route_lookup == ROUTE_LOOKUP_DIR24,
            None => false,
        };
        let mut entry = DIR24_LPM;
        if dir24 {
            let a = u32::from_be_bytes(daddr);
            let block = TBL24.get(a >> 16).ok_or(Reason::NoRoute)?;
            entry = block[((a >> 8) & 0xff) as usize];
            if entry & DIR24_TBL8 != 0 {
                let group = TBL8.get(entry & !DIR24_TBL8).ok_or(Reason::NoRoute)?;
                entry = group[(a & 0xff) as usize];
            }
        }
        let route = match entry {
            0 => return Err(Reason::NoRoute),
            DIR24_LPM => *ROUTES_V4.get(Key::new(32, daddr)).ok_or(Reason::NoRoute)?,
            e => dir24_decode(e),
        };
        Ok((
            route,
            Dest {
                addr: ipv4_mapped(daddr),
                ttl,
            },
        ))
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l3.off)?;
        let (daddr, hop) = unsafe { ((*ip).daddr, (*ip).hop_limit) };
        let route = ROUTES_V6.get(Key::new(128, daddr)).ok_or(Reason::NoRoute)?;
        Ok((
            *route,
            Dest {
                addr: daddr,
                ttl: hop,
            },
        ))
    }
}

#[inline(always)]
fn plan_route(ctx: &XdpContext, packet: &Packet, plan: &mut Plan) -> Result<(), Reason> {
    let l3 = &packet.l3;
    let (route, dest) = lookup(ctx, l3)?;
    plan.chain = CHAIN_FORWARD;
    plan.out_ifindex = 0;
    let nh_id = match route.kind {
        ROUTE_UNICAST => route.nh,
        ROUTE_MULTIPATH => pick_member(ctx, l3, route.nh)?,
        // Local before the TTL check: a packet for the box with TTL 1 is
        // delivered, not expired (net/ipv4/ip_input.c routes before
        // ip_forward() checks the TTL). The input chain filters it first.
        ROUTE_LOCAL => {
            plan.chain = CHAIN_INPUT;
            if plan.then == Reason::Forwarded {
                plan.then = Reason::Local;
            }
            return Ok(());
        }
        ROUTE_BLACKHOLE => return Err(Reason::Blackhole),
        ROUTE_UNREACHABLE | ROUTE_PROHIBIT => return Err(Reason::Unreachable),
        // The kernel forwards it through an interface XDP does not
        // manage: filtered here all the same (egress unknown to rules).
        ROUTE_KERNEL => {
            plan.then = Reason::EgressUnmanaged;
            return Ok(());
        }
        _ => return Err(Reason::NoRoute),
    };
    // Forwarding would take the TTL to 0: the kernel sends Time Exceeded
    // (RFC 1812 5.3.1; net/ipv4/ip_forward.c checks it before the
    // netfilter FORWARD hook, so the firewall does too).
    if dest.ttl <= 1 {
        return Err(Reason::TtlExceeded);
    }
    let nh: NextHop = *NEXTHOPS.get(nh_id).ok_or(Reason::NoRoute)?;
    if nh.ifindex == 0 {
        return Err(Reason::NoRoute);
    }
    plan.neigh_addr = if nh.family == NH_CONNECTED {
        dest.addr
    } else {
        nh.gateway
    };
    plan.out_ifindex = nh.ifindex;
    plan.nh = nh;
    // The firewall runs before anything that punts a packet the kernel
    // would forward (no neighbour, MTU, unmanaged egress): the kernel has
    // no rules of its own, so every path to it goes through the chain.
    Ok(())
}

/// The rest of the fast path, once the firewall accepted: egress checks,
/// neighbour, rewrite, and the redirect (or `XDP_TX`).
#[inline(never)]
pub fn deliver(ctx: &XdpContext, packet: &Packet, s: &Scratch) -> Reason {
    match try_deliver(ctx, packet, &s.plan) {
        Ok(reason) | Err(reason) => reason,
    }
}

#[inline(always)]
fn try_deliver(ctx: &XdpContext, packet: &Packet, plan: &Plan) -> Result<Reason, Reason> {
    let l3 = &packet.l3;
    let nh = &plan.nh;
    // SAFETY: copied out at once.
    let egress: IfaceInfo = *unsafe { IFACES.get(nh.ifindex) }.ok_or(Reason::EgressUnmanaged)?;
    // PORTS is not looked up here: the control plane adds a port to it with
    // the port's IFACES entry, and the redirect below fails on an empty
    // slot anyway (one helper call less per packet).
    if egress.flags & IFACE_F_UP == 0 {
        return Err(Reason::EgressUnmanaged);
    }
    if l3.len > egress.mtu as usize {
        return Err(Reason::Mtu);
    }
    let key = NeighKey {
        ifindex: nh.ifindex,
        addr: plan.neigh_addr,
    };
    // SAFETY: copied out at once.
    let neigh = *unsafe { NEIGHBOURS.get(key) }.ok_or(Reason::NoNeighbour)?;

    let l3_off = rewrite::l2(ctx, packet.vlan_depth, &neigh.mac, &egress)?;
    rewrite::decrement_ttl(ctx, l3.family, l3_off)?;

    if egress.parent_ifindex == plan.port {
        return Ok(Reason::Transmitted);
    }
    match PORTS.redirect(egress.parent_ifindex, 0) {
        Ok(action) if action == xdp_action::XDP_REDIRECT => Ok(Reason::Forwarded),
        // The port left the redirect table (the interface is going away):
        // the frame is already rewritten for the next hop, so the kernel
        // drops it as not addressed to it; counted here.
        _ => Err(Reason::EgressUnmanaged),
    }
}

/// The ECMP member for this flow: a hash of the 5-tuple, so one flow keeps
/// one path (RFC 2992 hash-threshold's goal, with modulo selection).
#[inline(always)]
fn pick_member(ctx: &XdpContext, l3: &L3, group_id: u32) -> Result<u32, Reason> {
    let group = NH_GROUPS.get(group_id).ok_or(Reason::NoRoute)?;
    let count = group.count;
    if count == 0 {
        return Err(Reason::NoRoute);
    }
    let idx = (flow_hash(ctx, l3)? % count) as usize;
    // The verifier needs this bound on the array index. Do not also check
    // `count <= MAX_ECMP` above: LLVM would then prove this check redundant
    // and delete it.
    if idx >= MAX_ECMP {
        return Err(Reason::NoRoute);
    }
    Ok(group.members[idx])
}

/// Hash of (source, destination, protocol, ports).
#[inline(always)]
fn flow_hash(ctx: &XdpContext, l3: &L3) -> Result<u32, Reason> {
    let mut h: u32 = 0x9e37_79b9 ^ l3.protocol as u32;
    if l3.family == 4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, l3.off)?;
        h = mix(h, u32::from_ne_bytes(unsafe { (*ip).saddr }));
        h = mix(h, u32::from_ne_bytes(unsafe { (*ip).daddr }));
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l3.off)?;
        let (s, d) = unsafe { ((*ip).saddr, (*ip).daddr) };
        for i in 0..4 {
            let o = i * 4;
            h = mix(h, u32::from_ne_bytes([s[o], s[o + 1], s[o + 2], s[o + 3]]));
            h = mix(h, u32::from_ne_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]));
        }
    }
    if l3.protocol == IPPROTO_TCP || l3.protocol == IPPROTO_UDP {
        let ports: *const [u8; 4] = ptr_at(ctx, l3.l4_off)?;
        h = mix(h, u32::from_ne_bytes(unsafe { *ports }));
    }
    Ok(fmix(h))
}

/// One round of a multiplicative hash.
#[inline(always)]
fn mix(h: u32, w: u32) -> u32 {
    (h ^ w).wrapping_mul(0x0100_0193).rotate_left(13)
}

/// MurmurHash3's finaliser: every input bit affects every output bit.
#[inline(always)]
fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Keeps the `xdp_action` import honest for readers: these are the values
/// `Reason::action` maps to.
const _: () = assert!(xdp_action::XDP_TX == 3 && xdp_action::XDP_REDIRECT == 4);

//! Header parsing. One `parse_<header>` per header, each moving a cursor and
//! reading only through [`ptr_at`], which proves to the verifier that every
//! access stays below `data_end` (as xdp-tools' parsing_helpers.h does).
//!
//! The result is a [`Packet`]: what the frame carries and, if the fast path
//! must not touch it, the [`Reason`] it goes to the kernel with.
//!
//! Exception precedence (first match wins): malformed, ARP, unknown
//! EtherType, too many VLAN tags, IPv6 ND, multicast/broadcast, link-local,
//! IPv4 options, fragment, IPv6 extension header.
use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use dataplane_common::{Class, MAX_VLAN_DEPTH, Reason};

use crate::headers::*;

/// What the parser learnt about a frame.
pub struct Packet {
    pub class: Class,
    /// Set when the frame must go to the kernel for a reason of its own.
    pub exception: Option<Reason>,
    /// Layer-3 details; zero for non-IP frames.
    pub l3: L3,
    /// 802.1Q/802.1ad tags in front of the L3 header (0..=MAX_VLAN_DEPTH).
    pub vlan_depth: usize,
    /// VLAN id of the outermost tag (when `vlan_depth > 0`).
    pub vid: u32,
    /// TPID of the outermost tag: 0x8100 (802.1Q) or 0x88a8 (802.1ad).
    pub tpid: u16,
}

/// Where the IP header is and what the forward stage needs from it.
#[derive(Clone, Copy, Default)]
pub struct L3 {
    /// 4 or 6; 0 for non-IP.
    pub family: u8,
    pub off: usize,
    pub l4_off: usize,
    pub protocol: u8,
    /// IPv4 total length, or IPv6 payload length plus the fixed header.
    pub len: usize,
}

/// Largest offset `ptr_at` accepts: well beyond any frame XDP sees (a page,
/// or a jumbo frame), below the verifier's MAX_PACKET_OFF (0xffff).
const MAX_FRAME_OFFSET: usize = 0x3fff;

/// Start of the frame. A volatile read: the program calls into separate
/// BPF functions with the context, and LLVM would otherwise pass them the
/// loaded `data`/`data_end` as 32-bit integers (argument promotion), which
/// the verifier refuses ("pointer arithmetic on pkt_end prohibited").
#[inline(always)]
pub fn data(ctx: &XdpContext) -> usize {
    // SAFETY: `ctx.ctx` is the program's context pointer.
    ctx.data()
}

/// End of the frame; see [`data`].
#[inline(always)]
pub fn data_end(ctx: &XdpContext) -> usize {
    // SAFETY: `ctx.ctx` is the program's context pointer.
    ctx.data_end()
}

/// Bytes in the frame.
#[inline(always)]
pub fn len(ctx: &XdpContext) -> usize {
    data_end(ctx) - data(ctx)
}

/// Bounds-checked pointer to a `T` at `offset` from the frame start.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, Reason> {
    // Offsets that went through memory (a `Packet` handed between BPF
    // functions) reach the verifier unbounded; it allows packet-pointer
    // arithmetic only with a bounded offset (below MAX_PACKET_OFF).
    if offset > MAX_FRAME_OFFSET {
        return Err(Reason::Malformed);
    }
    let start = data(ctx);
    let end = data_end(ctx);
    if start + offset + size_of::<T>() > end {
        return Err(Reason::Malformed);
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
fn frame_len(ctx: &XdpContext) -> usize {
    len(ctx)
}

/// Parse one frame. `Err` carries a reason that ends processing at once
/// (malformed, or a frame the fast path never looks into).
// A BPF-to-BPF call: its own stack frame (the verifier's 512-byte limit
// covers the whole call chain, and the firewall's calls come after).
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Reason> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // Group bit of the destination MAC: broadcast or multicast (IEEE 802-2014 8.2).
    let l2_multicast = unsafe { (*eth).dst[0] } & 1 == 1;
    let outer = be16(unsafe { (*eth).proto });
    let (ether_type, l3_off, vlan_depth, vid) = parse_vlans(ctx, outer)?;

    let mut packet = match ether_type {
        ETH_P_IP => parse_ipv4(ctx, l3_off)?,
        ETH_P_IPV6 => parse_ipv6(ctx, l3_off)?,
        ETH_P_ARP => {
            let _: *const ArpHdr = ptr_at(ctx, l3_off)?;
            Packet::non_ip(Class::Arp, Reason::Arp)
        }
        ETH_P_8021Q | ETH_P_8021AD => Packet::non_ip(Class::Other, Reason::VlanTooDeep),
        _ => Packet::non_ip(Class::Other, Reason::UnknownEtherType),
    };
    packet.vlan_depth = vlan_depth;
    packet.vid = vid;
    packet.tpid = outer;
    Ok(with_l2_multicast(packet, l2_multicast))
}

impl Packet {
    #[inline(always)]
    fn non_ip(class: Class, reason: Reason) -> Packet {
        Packet {
            class,
            exception: Some(reason),
            l3: L3::default(),
            vlan_depth: 0,
            vid: 0,
            tpid: 0,
        }
    }

    #[inline(always)]
    fn ip(class: Class, exception: Option<Reason>, l3: L3) -> Packet {
        Packet {
            class,
            exception,
            l3,
            vlan_depth: 0,
            vid: 0,
            tpid: 0,
        }
    }
}

/// An L2 group destination on an IP frame is the kernel's, whatever the L3
/// says; ND keeps its own reason (it is always multicast or unicast ND).
#[inline(always)]
fn with_l2_multicast(mut packet: Packet, l2_multicast: bool) -> Packet {
    let upgradable = matches!(
        packet.exception,
        None | Some(Reason::LinkLocal)
            | Some(Reason::Ipv4Options)
            | Some(Reason::Fragment)
            | Some(Reason::Ipv6ExtHeader)
    );
    if l2_multicast && upgradable {
        packet.exception = Some(Reason::Multicast);
    }
    packet
}

/// Walk up to [`MAX_VLAN_DEPTH`] 802.1Q / 802.1ad tags. Returns the inner
/// EtherType, the offset of the L3 header, the number of tags and the
/// outermost VLAN id. A deeper stack comes back with a VLAN EtherType, which
/// `parse` counts as too deep.
#[inline(always)]
fn parse_vlans(ctx: &XdpContext, outer: u16) -> Result<(u16, usize, usize, u32), Reason> {
    let mut ether_type = outer;
    let mut off = size_of::<EthHdr>();
    let mut depth = 0;
    let mut vid = 0;
    for _ in 0..MAX_VLAN_DEPTH {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan: *const VlanHdr = ptr_at(ctx, off)?;
        if depth == 0 {
            vid = (be16(unsafe { (*vlan).tci }) & 0x0fff) as u32;
        }
        ether_type = be16(unsafe { (*vlan).proto });
        off += size_of::<VlanHdr>();
        depth += 1;
    }
    Ok((ether_type, off, depth, vid))
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize) -> Result<Packet, Reason> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off)?;
    let (version_ihl, tot_len, frag_off, protocol, saddr, daddr) = unsafe {
        (
            (*ip).version_ihl,
            be16((*ip).tot_len) as usize,
            be16((*ip).frag_off),
            (*ip).protocol,
            (*ip).saddr,
            (*ip).daddr,
        )
    };
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    // RFC 791: version 4, IHL at least 5 words, total length covers the
    // header and fits in the frame (trailing Ethernet padding is allowed).
    if version_ihl >> 4 != 4 || ihl < size_of::<Ipv4Hdr>() || tot_len < ihl {
        return Err(Reason::Malformed);
    }
    if off + tot_len > frame_len(ctx) {
        return Err(Reason::Malformed);
    }
    // MF flag or a non-zero fragment offset.
    let fragment = frag_off & 0x3fff != 0;
    let first_fragment = frag_off & 0x1fff == 0;
    let l4_off = off + ihl;
    let class = match protocol {
        IPPROTO_TCP => Class::Ipv4Tcp,
        IPPROTO_UDP => Class::Ipv4Udp,
        IPPROTO_ICMP => Class::Ipv4Icmp,
        _ => Class::Ipv4Other,
    };
    if first_fragment {
        check_l4(ctx, protocol, l4_off, off + tot_len)?;
    }

    let exception = if daddr[0] & 0xf0 == 0xe0 || daddr == [255; 4] {
        Some(Reason::Multicast)
    } else if is_ipv4_link_local(saddr) || is_ipv4_link_local(daddr) {
        Some(Reason::LinkLocal)
    } else if ihl > size_of::<Ipv4Hdr>() {
        Some(Reason::Ipv4Options)
    } else if fragment {
        Some(Reason::Fragment)
    } else {
        None
    };
    let l3 = L3 {
        family: 4,
        off,
        l4_off,
        protocol,
        len: tot_len,
    };
    Ok(Packet::ip(class, exception, l3))
}

#[inline(always)]
fn is_ipv4_link_local(a: [u8; 4]) -> bool {
    a[0] == 169 && a[1] == 254
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize) -> Result<Packet, Reason> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, off)?;
    let (version, payload_len, nexthdr, saddr0, saddr1, daddr0, daddr1) = unsafe {
        (
            (*ip).vtc_flow[0] >> 4,
            be16((*ip).payload_len) as usize,
            (*ip).nexthdr,
            (*ip).saddr[0],
            (*ip).saddr[1],
            (*ip).daddr[0],
            (*ip).daddr[1],
        )
    };
    let l4_off = off + size_of::<Ipv6Hdr>();
    if version != 6 || l4_off + payload_len > frame_len(ctx) {
        return Err(Reason::Malformed);
    }
    let class = match nexthdr {
        IPPROTO_TCP => Class::Ipv6Tcp,
        IPPROTO_UDP => Class::Ipv6Udp,
        IPPROTO_ICMPV6 => Class::Ipv6Icmp,
        _ => Class::Ipv6Other,
    };
    check_l4(ctx, nexthdr, l4_off, l4_off + payload_len)?;

    let exception = if nexthdr == IPPROTO_ICMPV6 && is_nd(ctx, l4_off)? {
        Some(Reason::Ipv6Nd)
    } else if daddr0 == 0xff {
        Some(Reason::Multicast)
    } else if is_ipv6_link_local(saddr0, saddr1) || is_ipv6_link_local(daddr0, daddr1) {
        Some(Reason::LinkLocal)
    } else if nexthdr == IPPROTO_FRAGMENT {
        Some(Reason::Fragment)
    } else if is_ipv6_ext_header(nexthdr) {
        Some(Reason::Ipv6ExtHeader)
    } else {
        None
    };
    let l3 = L3 {
        family: 6,
        off,
        l4_off,
        protocol: nexthdr,
        len: size_of::<Ipv6Hdr>() + payload_len,
    };
    Ok(Packet::ip(class, exception, l3))
}

/// fe80::/10 (RFC 4291 2.5.6).
#[inline(always)]
fn is_ipv6_link_local(b0: u8, b1: u8) -> bool {
    b0 == 0xfe && b1 & 0xc0 == 0x80
}

/// Extension headers of RFC 8200 4 and the IANA registry; not walked yet.
#[inline(always)]
fn is_ipv6_ext_header(nexthdr: u8) -> bool {
    matches!(
        nexthdr,
        IPPROTO_HOPOPTS
            | IPPROTO_ROUTING
            | IPPROTO_DSTOPTS
            | IPPROTO_AH
            | IPPROTO_ESP
            | IPPROTO_MH
            | IPPROTO_HIP
            | IPPROTO_SHIM6
    )
}

/// Router/neighbour solicitation and advertisement, redirect (RFC 4861 4).
#[inline(always)]
fn is_nd(ctx: &XdpContext, l4_off: usize) -> Result<bool, Reason> {
    let icmp: *const IcmpHdr = ptr_at(ctx, l4_off)?;
    let kind = unsafe { (*icmp).kind };
    Ok((133..=137).contains(&kind))
}

/// The L4 header must be whole inside the IP packet (`ip_end`, not the
/// frame end: Ethernet padding after a short packet is not an L4 header); a
/// TCP data offset must cover the fixed header and fit (RFC 9293 3.1).
///
/// The packet-pointer check (`ptr_at`) comes first on purpose: done after
/// the `ip_end` comparison, LLVM proves it redundant from the earlier IP
/// length check and deletes it, and the verifier then rejects the access.
#[inline(always)]
fn check_l4(ctx: &XdpContext, protocol: u8, off: usize, ip_end: usize) -> Result<(), Reason> {
    let end = match protocol {
        IPPROTO_TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, off)?;
            let doff = ((unsafe { (*tcp).doff_res } >> 4) as usize) * 4;
            if doff < size_of::<TcpHdr>() {
                return Err(Reason::Malformed);
            }
            off + doff
        }
        IPPROTO_UDP => {
            let _: *const UdpHdr = ptr_at(ctx, off)?;
            off + size_of::<UdpHdr>()
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let _: *const IcmpHdr = ptr_at(ctx, off)?;
            off + size_of::<IcmpHdr>()
        }
        _ => return Ok(()),
    };
    if end > ip_end {
        return Err(Reason::Malformed);
    }
    Ok(())
}

//! Rejections built in place and sent back out of the ingress port with
//! `XDP_TX`: a TCP RST for TCP (RFC 9293 3.10.7.1, the reset generation
//! rules for a closed port), an ICMP / ICMPv6 port unreachable otherwise
//! (RFC 792, RFC 4443 3.1), which is what iptables' REJECT sends by default.
//!
//! The reply keeps the frame's VLAN tag and swaps its MACs, so it goes back
//! the way the packet came. It is sourced from the packet's destination
//! address, as the host being protected would have answered.
use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use dataplane_common::Reason;

use crate::{
    firewall::View,
    headers::{EthHdr, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, Ipv4Hdr, Ipv6Hdr, TcpHdr},
    parse::{Packet, ptr_at},
};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// TTL / hop limit of the replies (Linux's default, net.ipv4.ip_default_ttl).
const REPLY_TTL: u8 = 64;
/// RFC 1812 4.3.2.3: an ICMP error should quote as much as fits in 576
/// bytes; minus the IPv4 and ICMP headers.
const QUOTE_MAX_V4: usize = 576 - 28;
/// RFC 4443 2.4 (c): as much as fits in the minimum IPv6 MTU (1280 bytes);
/// minus the IPv6 and ICMPv6 headers.
const QUOTE_MAX_V6: usize = 1280 - 48;

/// Turn the frame into the rejection of `packet`. `Err` leaves the frame in
/// an unspecified state; the caller drops it.
// A BPF-to-BPF call: its own stack frame (the 512-byte limit is per frame).
#[inline(never)]
pub fn send(ctx: &XdpContext, packet: &Packet, v: &View) -> Result<(), Reason> {
    // Without a trustworthy L4 header there is nothing to answer (a
    // fragment, options): drop. Never answer an ICMP error with another
    // (RFC 1122 3.2.2), nor a RST with a RST (RFC 9293 3.10.7.1).
    if !v.l4 || (v.is_icmp && is_icmp_error(v)) || (v.is_tcp && v.tcp_flags & TCP_RST != 0) {
        return Err(Reason::Filtered);
    }
    if v.is_tcp {
        tcp_reset(ctx, packet, v)
    } else if v.family == 4 {
        icmp4_unreachable(ctx, packet, v)
    } else {
        icmp6_unreachable(ctx, packet, v)
    }
}

#[inline(always)]
fn is_icmp_error(v: &View) -> bool {
    if v.family == 4 {
        !matches!(v.icmp_type, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
    } else {
        v.icmp_type < 128
    }
}

/// RFC 9293 3.10.7.1: if the segment has ACK, the reset takes its sequence
/// number from the segment's acknowledgment number; otherwise sequence 0
/// and ACK of the segment's sequence number plus its length (SYN and FIN
/// count one each).
#[inline(always)]
fn tcp_reset(ctx: &XdpContext, packet: &Packet, v: &View) -> Result<(), Reason> {
    let l3 = &packet.l3;
    let tcp: *const TcpHdr = ptr_at(ctx, l3.l4_off)?;
    let (seq, ack, doff) = unsafe {
        (
            u32::from_be_bytes((*tcp).seq),
            u32::from_be_bytes((*tcp).ack_seq),
            (((*tcp).doff_res >> 4) as usize) * 4,
        )
    };
    let ip_hdr = l3.l4_off - l3.off;
    let data = l3.len.saturating_sub(ip_hdr + doff) as u32;
    let f = v.tcp_flags;
    let (rst_seq, rst_ack, rst_flags) = if f & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        let len = data + (f & TCP_SYN != 0) as u32 + (f & TCP_FIN != 0) as u32;
        (0, seq.wrapping_add(len), TCP_RST | TCP_ACK)
    };
    let l2 = l3.off;
    let new_ip_hdr = if v.family == 4 { 20 } else { 40 };
    resize(ctx, l2 + new_ip_hdr + 20)?;
    swap_macs(ctx)?;
    write_ip(ctx, l2, v, IPPROTO_TCP, 20, 0)?;
    let off = l2 + new_ip_hdr;
    let tcp = ptr_at::<TcpHdr>(ctx, off)? as *mut TcpHdr;
    // One pointer, checked once, for the writes and the checksum read:
    // a second bounds check of the same range is one LLVM deletes as
    // redundant and the verifier then misses.
    unsafe {
        (*tcp).source = v.dport.to_be_bytes();
        (*tcp).dest = v.sport.to_be_bytes();
        (*tcp).seq = rst_seq.to_be_bytes();
        (*tcp).ack_seq = rst_ack.to_be_bytes();
        (*tcp).doff_res = 0x50;
        (*tcp).flags = rst_flags;
        (*tcp).window = [0; 2];
        (*tcp).check = [0; 2];
        (*tcp).urg_ptr = [0; 2];
    }
    let sum = pseudo_header(v, IPPROTO_TCP, 20) + sum_bytes(unsafe { &*(tcp as *const [u8; 20]) });
    unsafe { (*tcp).check = fold(sum).to_be_bytes() };
    Ok(())
}

/// ICMP destination unreachable, code 3 (port unreachable), quoting the
/// packet from its IP header on.
#[inline(always)]
fn icmp4_unreachable(ctx: &XdpContext, packet: &Packet, v: &View) -> Result<(), Reason> {
    let l2 = packet.l3.off;
    let quote = min(packet.l3.len, QUOTE_MAX_V4) & !3;
    prepend(ctx, l2, 28)?;
    resize(ctx, l2 + 28 + quote)?;
    write_ip(ctx, l2, v, IPPROTO_ICMP, 8 + quote, 0xc0)?;
    let sum = 0x0303 + sum_quote_v4(ctx, l2 + 28, quote)?;
    write_icmp(ctx, l2 + 20, [3, 3], fold(sum))
}

/// ICMPv6 destination unreachable, code 4 (port unreachable).
#[inline(always)]
fn icmp6_unreachable(ctx: &XdpContext, packet: &Packet, v: &View) -> Result<(), Reason> {
    let l2 = packet.l3.off;
    let quote = min(packet.l3.len, QUOTE_MAX_V6) & !3;
    prepend(ctx, l2, 48)?;
    resize(ctx, l2 + 48 + quote)?;
    write_ip(ctx, l2, v, IPPROTO_ICMPV6, 8 + quote, 0)?;
    let sum =
        pseudo_header(v, IPPROTO_ICMPV6, 8 + quote) + 0x0104 + sum_quote_v6(ctx, l2 + 48, quote)?;
    write_icmp(ctx, l2 + 40, [1, 4], fold(sum))
}

#[inline(always)]
fn min(a: usize, b: usize) -> usize {
    if a < b { a } else { b }
}

#[inline(always)]
fn write_icmp(ctx: &XdpContext, off: usize, type_code: [u8; 2], check: u16) -> Result<(), Reason> {
    let icmp = ptr_at::<[u8; 8]>(ctx, off)? as *mut [u8; 8];
    let c = check.to_be_bytes();
    unsafe { *icmp = [type_code[0], type_code[1], c[0], c[1], 0, 0, 0, 0] };
    Ok(())
}

/// Sum of a 20-byte header as 16-bit words.
#[inline(always)]
fn sum_bytes(h: &[u8; 20]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 20 {
        sum += u16::from_be_bytes([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// Sum of the quoted bytes as 16-bit words. Two copies with constant
/// bounds (IPv4, IPv6) keep the loop simple for the verifier.
#[inline(always)]
fn sum_quote_v4(ctx: &XdpContext, off: usize, len: usize) -> Result<u32, Reason> {
    let mut sum = 0u32;
    let mut i = 0;
    while i < QUOTE_MAX_V4 / 4 {
        if i * 4 >= len {
            break;
        }
        let w: *const [u8; 4] = ptr_at(ctx, off + i * 4)?;
        let w = unsafe { *w };
        sum += u16::from_be_bytes([w[0], w[1]]) as u32 + u16::from_be_bytes([w[2], w[3]]) as u32;
        i += 1;
    }
    Ok(sum)
}

#[inline(always)]
fn sum_quote_v6(ctx: &XdpContext, off: usize, len: usize) -> Result<u32, Reason> {
    let mut sum = 0u32;
    let mut i = 0;
    while i < QUOTE_MAX_V6 / 4 {
        if i * 4 >= len {
            break;
        }
        let w: *const [u8; 4] = ptr_at(ctx, off + i * 4)?;
        let w = unsafe { *w };
        sum += u16::from_be_bytes([w[0], w[1]]) as u32 + u16::from_be_bytes([w[2], w[3]]) as u32;
        i += 1;
    }
    Ok(sum)
}

/// Write the reply's IP header at `off`: addresses swapped, `payload`
/// bytes of `proto` after it.
#[inline(always)]
fn write_ip(
    ctx: &XdpContext,
    off: usize,
    v: &View,
    proto: u8,
    payload: usize,
    tos: u8,
) -> Result<(), Reason> {
    if v.family == 4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, off)? as *mut Ipv4Hdr;
        unsafe {
            (*ip).version_ihl = 0x45;
            (*ip).tos = tos;
            (*ip).tot_len = ((20 + payload) as u16).to_be_bytes();
            (*ip).id = [0; 2];
            (*ip).frag_off = [0x40, 0];
            (*ip).ttl = REPLY_TTL;
            (*ip).protocol = proto;
            (*ip).check = [0; 2];
            (*ip).saddr = [v.dst[12], v.dst[13], v.dst[14], v.dst[15]];
            (*ip).daddr = [v.src[12], v.src[13], v.src[14], v.src[15]];
        }
        let sum = sum_bytes(unsafe { &*(ip as *const [u8; 20]) });
        unsafe { (*ip).check = fold(sum).to_be_bytes() };
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, off)? as *mut Ipv6Hdr;
        unsafe {
            (*ip).vtc_flow = [0x60, 0, 0, 0];
            (*ip).payload_len = (payload as u16).to_be_bytes();
            (*ip).nexthdr = proto;
            (*ip).hop_limit = REPLY_TTL;
            (*ip).saddr = v.dst;
            (*ip).daddr = v.src;
        }
    }
    Ok(())
}

/// The pseudo-header sum of the reply (addresses swapped, which does not
/// change the sum): RFC 9293 3.1 (IPv4), RFC 8200 8.1 (IPv6).
#[inline(always)]
fn pseudo_header(v: &View, proto: u8, len: usize) -> u32 {
    let start = if v.family == 4 { 12 } else { 0 };
    let mut sum = proto as u32 + len as u32;
    let mut i = start;
    while i < 16 {
        sum += u16::from_be_bytes([v.src[i], v.src[i + 1]]) as u32;
        sum += u16::from_be_bytes([v.dst[i], v.dst[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// One's-complement fold and complement (RFC 1071).
#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> Result<(), Reason> {
    let eth = ptr_at::<EthHdr>(ctx, 0)? as *mut EthHdr;
    unsafe {
        core::mem::swap(&mut (*eth).dst, &mut (*eth).src);
    }
    Ok(())
}

/// Make room for `room` bytes of new headers between the L2 header (`l2`
/// bytes, kept, MACs swapped) and the packet, which becomes the quote.
#[inline(always)]
fn prepend(ctx: &XdpContext, l2: usize, room: usize) -> Result<(), Reason> {
    // SAFETY: the helper checks the new head against the headroom.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(room as i32)) } != 0 {
        return Err(Reason::Filtered);
    }
    // The old L2 header now starts at `room`; copy it to the front. Its
    // EtherType / tags stay valid: the reply is of the same family.
    let old = ptr_at::<EthHdr>(ctx, room)?;
    let new = ptr_at::<EthHdr>(ctx, 0)? as *mut EthHdr;
    unsafe {
        (*new).dst = (*old).src;
        (*new).src = (*old).dst;
        (*new).proto = (*old).proto;
    }
    if l2 == 18 {
        let tag = ptr_at::<[u8; 4]>(ctx, room + 14)?;
        let out = ptr_at::<[u8; 4]>(ctx, 14)? as *mut [u8; 4];
        unsafe { *out = *tag };
    }
    Ok(())
}

/// Trim the frame to `len` bytes.
#[inline(always)]
fn resize(ctx: &XdpContext, len: usize) -> Result<(), Reason> {
    let cur = crate::parse::len(ctx);
    let delta = len as i32 - cur as i32;
    if delta == 0 {
        return Ok(());
    }
    // SAFETY: the helper checks the new tail against the buffer.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return Err(Reason::Filtered);
    }
    Ok(())
}
